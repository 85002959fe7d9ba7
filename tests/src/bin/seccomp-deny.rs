//! `seccomp-deny SYSCALL[,SYSCALL…] ERRNO -- COMMAND [ARGS…]`: runs COMMAND with a seccomp
//! filter that makes the named syscalls fail with ERRNO (a number, or EPERM/ENOSYS/EACCES),
//! everything else allowed. It is how a container runtime's default seccomp profile treats
//! io_uring, so the e2e tests use it to check the agent's read/write fallback for real.
//! Known syscall names: io_uring_setup, io_uring_enter, io_uring_register.
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use std::os::unix::process::CommandExt;

fn syscall(name: &str) -> Option<i64> {
    Some(match name {
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        _ => return None,
    })
}

fn errno(s: &str) -> Option<u32> {
    Some(match s {
        "EPERM" => libc::EPERM as u32,
        "ENOSYS" => libc::ENOSYS as u32,
        "EACCES" => libc::EACCES as u32,
        n => n.parse().ok()?,
    })
}

fn die(msg: &str) -> ! {
    eprintln!("seccomp-deny: {msg}");
    std::process::exit(125);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: seccomp-deny SYSCALL[,SYSCALL...] ERRNO -- COMMAND [ARGS...]";
    if args.len() < 4 || args[2] != "--" {
        die(usage);
    }
    let errno = errno(&args[1]).unwrap_or_else(|| die(&format!("bad errno {:?}", args[1])));
    let rules = args[0]
        .split(',')
        .map(|n| {
            let nr = syscall(n).unwrap_or_else(|| die(&format!("unknown syscall {n:?}")));
            (nr, vec![])
        })
        .collect();
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .unwrap_or_else(|e| die(&format!("architecture: {e:?}")));
    let filter: BpfProgram = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch,
    )
    .and_then(|f| f.try_into())
    .unwrap_or_else(|e| die(&format!("building the filter: {e}")));
    seccompiler::apply_filter(&filter).unwrap_or_else(|e| die(&format!("applying: {e}")));
    let e = std::process::Command::new(&args[3]).args(&args[4..]).exec();
    die(&format!("exec {}: {e}", args[3]));
}
