mod cgroup;
mod landlock;
mod mounts;
mod namespaces;
mod seccomp;
mod walls;
