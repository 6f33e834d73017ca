mod landlock;
mod seccomp;
