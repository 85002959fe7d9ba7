//! uswitch-cni: CNI 1.1 plugin attaching pods to uswitch (memif ports on bridges), a drop-in for
//! Intel's userspace-CNI (install it also as `userspace`).
//!
//! Protocol: CNI_* environment, network config on stdin, result or error JSON on stdout, exit
//! status 0 on success and 1 on error. Logs go to stderr (level `logLevel`, default warning) or
//! to `logFile`. See docs/cni.md for the NetConf fields and what each verb does.
mod agent;
mod cmd_add;
mod cmd_check;
mod cmd_del;
mod cmd_gc;
mod env;
mod error;
mod ipam;
mod lock;
mod netconf;
mod plan;
mod state;
mod status;
mod switch;
mod types;

use crate::env::{CniEnv, Command};
use crate::error::{CniError, CniResult, Code};
use crate::netconf::NetConf;
use crate::types::{Version, LATEST};
use std::io::{Read, Write};

fn init_logging(conf: &NetConf) {
    let level = match conf
        .log_level
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("panic") | Some("error") => "error",
        Some("info") => "info",
        Some("debug") => "debug",
        Some("verbose") | Some("trace") => "trace",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("uswitch_cni={level},uswitch={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let file = conf
        .log_file
        .as_deref()
        .filter(|f| !f.is_empty())
        .and_then(|f| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .ok()
        });
    let _ = match file {
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Runs one invocation; `Ok(Some(json))` is printed, `Ok(None)` prints nothing.
fn run(cmd: Command, stdin: &[u8]) -> CniResult<Option<serde_json::Value>> {
    if cmd == Command::Version {
        let asked = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| {
                v.get("cniVersion")
                    .and_then(|s| s.as_str())
                    .map(String::from)
            })
            .filter(|v| Version::supported(v).is_ok())
            .unwrap_or_else(|| LATEST.to_string());
        return Ok(Some(types::version_info(&asked)));
    }
    let conf = NetConf::parse(stdin)?;
    init_logging(&conf);
    let raw: serde_json::Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::with_details(
            Code::Decode,
            "cannot decode the network config",
            e.to_string(),
        )
    })?;
    let env = CniEnv::read(cmd, |k| std::env::var(k).ok())?;
    tracing::debug!(?cmd, plugin = %conf.plugin_type, container = %env.container_id, ifname = %env.ifname, "invoked");
    match cmd {
        Command::Add => cmd_add::run(&conf, &raw, &env).map(Some),
        Command::Del => cmd_del::run(&conf, &raw, &env).map(|_| None),
        Command::Check => cmd_check::run(&conf, &raw, &env).map(|_| None),
        Command::Gc => cmd_gc::run(&conf, &raw, &env).map(|r| {
            tracing::info!(
                removed = r.attachments.len(),
                orphans = r.orphan_ports.len(),
                "GC done"
            );
            None
        }),
        Command::Status => status::run(&conf, &raw, &env).map(|_| None),
        Command::Version => Ok(None),
    }
}

/// The cniVersion to put in an error: the config's when we speak it, else the latest.
fn error_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|s| s.as_str())
                .map(String::from)
        })
        .filter(|v| Version::supported(v).is_ok())
        .unwrap_or_else(|| LATEST.to_string())
}

fn main() {
    let mut stdin = Vec::new();
    let res = std::env::var("CNI_COMMAND")
        .map_err(|_| CniError::new(Code::InvalidEnv, "CNI_COMMAND is not set"))
        .and_then(|c| Command::parse(&c))
        .and_then(|cmd| {
            std::io::stdin()
                .read_to_end(&mut stdin)
                .map_err(|e| CniError::io("reading the network config from stdin", &e))?;
            run(cmd, &stdin)
        });
    let mut out = std::io::stdout().lock();
    let code = match res {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{}", serde_json::to_string(&v).unwrap_or_default());
            0
        }
        Ok(None) => 0,
        Err(e) => {
            tracing::error!(error = %e, "failed");
            eprintln!("uswitch-cni: {e}");
            let _ = writeln!(out, "{}", e.to_json(&error_version(&stdin)));
            1
        }
    };
    let _ = out.flush();
    std::process::exit(code);
}
