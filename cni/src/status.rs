//! STATUS: can this plugin serve ADD right now?
//!
//! Error 50 (plugin not available) when uswitchd does not answer on its control socket, or when
//! the configured IPAM plugin is not in CNI_PATH; success (no output) otherwise.
use crate::env::CniEnv;
use crate::error::{CniError, CniResult, Code};
use crate::ipam::Ipam;
use crate::netconf::NetConf;
use crate::switch::Switch;

pub fn run(conf: &NetConf, raw: &serde_json::Value, env: &CniEnv) -> CniResult<()> {
    conf.version()?;
    let sw = Switch::new(&conf.control(), conf.timeout());
    if let Err(e) = sw.probe() {
        return Err(CniError::with_details(
            Code::PluginNotAvailable,
            format!("uswitchd is not reachable at {}", sw.control().display()),
            e.to_string(),
        ));
    }
    if let Some(i) = Ipam::new(raw, env, "", "")? {
        if !env.path.iter().any(|d| d.join(i.plugin_type()).is_file()) {
            return Err(CniError::new(
                Code::PluginNotAvailable,
                format!("IPAM plugin {:?} not found in CNI_PATH", i.plugin_type()),
            ));
        }
    }
    Ok(())
}
