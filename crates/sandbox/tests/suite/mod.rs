mod cgroup;
mod landlock;
mod namespaces;
mod seccomp;
mod walls;
