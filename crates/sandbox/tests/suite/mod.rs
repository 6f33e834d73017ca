mod cgroup;
mod landlock;
mod seccomp;
mod walls;
