mod cgroup;
mod landlock;
mod seccomp;
