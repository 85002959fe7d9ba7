//! The vhost-user message handler: negotiated features, memory table and ring setup of one
//! connection. The rust-vmm `vhost` crate receives, frames and validates each message and calls
//! us; we keep the state and, when something the worker depends on changed, build a complete
//! [`Device`] and publish it through [`Shared`].
//!
//! Rules:
//! - Ring indices are checked against our 2 × queues rings; ring sizes must be powers of two.
//! - A ring goes live when it has a size, addresses, memory, a kick (SET_VRING_KICK, which
//!   starts it) and is enabled (always, unless VHOST_USER_F_PROTOCOL_FEATURES was negotiated,
//!   when SET_VRING_ENABLE decides). Addresses that fail translation make the ring fail (logged,
//!   `control_errors`), not the connection.
//! - GET_VRING_BASE stops the ring: we publish a device without it, wait for the worker to let
//!   go of it, then report the worker's last avail index.
//! - A new memory table replaces the old one only through a new device; the old mappings live
//!   until the worker has switched (see `shm.rs` ownership rules).
use super::features;
use super::mem::{GuestMemory, RegionDesc};
use super::session::Shared;
use super::virtq::{Device, RingAddrs, RingSetup, VirtQueue, MAX_QUEUE_SIZE};
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vhost::vhost_user::message::*;
use vhost::vhost_user::{
    Backend, Error as VuError, GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut,
};
use vhost::VhostUserMemoryRegionBase;

fn refuse(what: &'static str) -> VuError {
    VuError::InvalidOperation(what)
}

fn handler_error(msg: String) -> VuError {
    VuError::ReqHandlerError(std::io::Error::other(msg))
}

#[derive(Default)]
struct RingState {
    addrs: RingAddrs,
    addr_set: bool,
    base: u16,
    kick: Option<File>,
    call: Option<Arc<File>>,
    started: bool,
    enabled: bool,
    /// Started or rebased since the last publish.
    fresh: bool,
    /// Part of the last published device.
    live: bool,
    /// Could not be built with the current addresses / memory.
    failed: bool,
}

/// Per-connection vhost-user state (backend side).
pub struct Handler {
    shared: Arc<Shared>,
    name: String,
    features: u64,
    acked_proto: u64,
    mem: Option<Arc<GuestMemory>>,
    rings: Vec<RingState>,
    /// Something the worker depends on changed: publish after this message.
    pub dirty: bool,
}

impl Handler {
    pub fn new(name: &str, queues: u16, shared: Arc<Shared>) -> Handler {
        let rings = (0..2 * usize::from(queues))
            .map(|_| RingState::default())
            .collect();
        Handler {
            shared,
            name: name.to_string(),
            features: 0,
            acked_proto: 0,
            mem: None,
            rings,
            dirty: false,
        }
    }

    fn ring(&mut self, index: u32) -> VuResult<&mut RingState> {
        self.rings
            .get_mut(index as usize)
            .ok_or(VuError::InvalidParam)
    }

    fn error(&self, msg: &str) {
        self.shared.control_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(port = %self.name, "vhost-user: {msg}");
    }

    /// Builds the device from the current state and hands it to the worker.
    pub fn publish(&mut self) -> u64 {
        self.dirty = false;
        let proto = self.features & features::PROTOCOL_FEATURES != 0;
        let mut dev = Device {
            rings: Vec::with_capacity(self.rings.len()),
            features: self.features,
        };
        let mut errors = Vec::new();
        for (i, r) in self.rings.iter_mut().enumerate() {
            let want = r.started && r.addr_set && (r.enabled || !proto) && !r.failed;
            let q = match (&self.mem, want) {
                (Some(mem), true) => {
                    let setup = RingSetup {
                        addrs: r.addrs,
                        base: r.base,
                        features: self.features,
                        call: r.call.clone(),
                        fresh: r.fresh,
                    };
                    match VirtQueue::new(mem.clone(), &setup) {
                        Ok(q) => Some(q),
                        Err(e) => {
                            r.failed = true;
                            errors.push(format!("vring {i}: {e}"));
                            None
                        }
                    }
                }
                _ => None,
            };
            r.live = q.is_some();
            if r.live {
                r.fresh = false;
            }
            dev.rings.push(q);
        }
        for e in errors {
            self.error(&e);
        }
        let pairs = dev.active_pairs();
        {
            let mut info = self.shared.lock_info();
            info.features = self.features;
            info.protocol_features = self.acked_proto;
            info.regions = self.mem.as_ref().map_or(0, |m| m.regions());
            info.memory_bytes = self.mem.as_ref().map_or(0, |m| m.total_size());
            info.active_pairs = pairs;
        }
        self.shared.publish(Some(dev))
    }

    /// A SET_VRING_ENABLE seen (by peeking) before SET_FEATURES acked PROTOCOL_FEATURES, which
    /// the `vhost` crate refuses without calling us. True when it was applied here (the crate's
    /// refusal is then expected); false when the crate will deliver it normally.
    pub fn early_enable(&mut self, index: u32, num: u32) -> bool {
        if self.features & features::PROTOCOL_FEATURES != 0 || num > 1 {
            return false;
        }
        tracing::debug!(port = %self.name, "SET_VRING_ENABLE {index} {num} (before SET_FEATURES)");
        match self.rings.get_mut(index as usize) {
            Some(r) => {
                let enable = num == 1;
                if r.enabled != enable {
                    r.enabled = enable;
                    self.dirty = true;
                }
                true
            }
            None => {
                self.error(&format!(
                    "SET_VRING_ENABLE for vring {index}, which does not exist"
                ));
                true
            }
        }
    }

    /// Drops all negotiated state (RESET_OWNER, disconnect); waits for the worker to let go.
    pub fn reset(&mut self) {
        let n = self.rings.len();
        self.rings = (0..n).map(|_| RingState::default()).collect();
        self.features = 0;
        self.acked_proto = 0;
        self.mem = None;
        self.dirty = false;
        let gen = self.shared.publish(None);
        self.shared.wait_applied(gen);
        let mut info = self.shared.lock_info();
        info.features = 0;
        info.protocol_features = 0;
        info.regions = 0;
        info.memory_bytes = 0;
        info.active_pairs = 0;
    }
}

impl VhostUserBackendReqHandlerMut for Handler {
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }
    fn reset_owner(&mut self) -> VuResult<()> {
        self.reset();
        Ok(())
    }
    fn reset_device(&mut self) -> VuResult<()> {
        self.reset();
        Ok(())
    }
    fn get_features(&mut self) -> VuResult<u64> {
        Ok(features::OFFERED)
    }
    fn set_features(&mut self, f: u64) -> VuResult<()> {
        tracing::debug!(port = %self.name, "SET_FEATURES {f:#x}");
        if f & !features::OFFERED != 0 {
            self.error(&format!("frontend acked features {f:#x} we did not offer"));
            return Err(VuError::FeatureMismatch);
        }
        if f != self.features {
            self.features = f;
            self.rings.iter_mut().for_each(|r| r.failed = false);
            self.dirty = true;
        }
        Ok(())
    }
    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy_listening: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        let descs: Vec<RegionDesc> = ctx
            .iter()
            .map(|r| RegionDesc {
                guest_phys_addr: r.guest_phys_addr,
                memory_size: r.memory_size,
                user_addr: r.user_addr,
                mmap_offset: r.mmap_offset,
            })
            .collect();
        match GuestMemory::new(&descs, files) {
            Ok(m) => {
                tracing::info!(port = %self.name, regions = m.regions(), bytes = m.total_size(), "vhost-user memory table");
                self.mem = Some(Arc::new(m));
                self.rings.iter_mut().for_each(|r| r.failed = false);
                self.dirty = true;
                Ok(None)
            }
            Err(e) => {
                self.error(&e.to_string());
                Err(handler_error(e.to_string()))
            }
        }
    }
    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        tracing::debug!(port = %self.name, "SET_VRING_NUM {index} {num}");
        if num == 0 || num > u32::from(MAX_QUEUE_SIZE) || !num.is_power_of_two() {
            self.error(&format!(
                "vring {index}: size {num} is not a power of two ≤ 32768"
            ));
            return Err(VuError::InvalidParam);
        }
        let r = self.ring(index)?;
        r.addrs.size = num as u16;
        r.failed = false;
        Ok(())
    }
    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        tracing::debug!(port = %self.name, "SET_VRING_ADDR {index} desc {descriptor:#x} avail {available:#x} used {used:#x}");
        let r = self.ring(index)?;
        r.addrs.desc = descriptor;
        r.addrs.used = used;
        r.addrs.avail = available;
        r.addr_set = true;
        r.failed = false;
        if r.live {
            r.fresh = true;
            self.dirty = true;
        }
        Ok(())
    }
    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        tracing::debug!(port = %self.name, "SET_VRING_BASE {index} {base}");
        let r = self.ring(index)?;
        r.base = base as u16;
        r.fresh = true;
        Ok(())
    }
    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        tracing::debug!(port = %self.name, "GET_VRING_BASE {index}");
        let Some(r) = self.rings.get_mut(index as usize) else {
            self.error(&format!(
                "GET_VRING_BASE for vring {index}, which does not exist"
            ));
            return Ok(VhostUserVringState::new(index, 0));
        };
        let was_live = r.live;
        r.started = false;
        r.kick = None;
        let mut base = r.base;
        if was_live {
            let gen = self.publish();
            self.shared.wait_applied(gen);
            base = self.shared.last_avail[index as usize].load(Ordering::Acquire);
        }
        if let Some(r) = self.rings.get_mut(index as usize) {
            r.base = base;
        }
        Ok(VhostUserVringState::new(index, u32::from(base)))
    }
    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        tracing::debug!(port = %self.name, "SET_VRING_KICK {index} fd {}", fd.is_some());
        let r = self.ring(u32::from(index))?;
        r.kick = fd;
        r.started = true;
        r.fresh = true;
        self.dirty = true;
        Ok(())
    }
    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        tracing::debug!(port = %self.name, "SET_VRING_CALL {index} fd {}", fd.is_some());
        let r = self.ring(u32::from(index))?;
        r.call = fd.map(Arc::new);
        if r.live {
            self.dirty = true;
        }
        Ok(())
    }
    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> VuResult<()> {
        self.ring(u32::from(index)).map(|_| ())
    }
    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK)
    }
    fn set_protocol_features(&mut self, f: u64) -> VuResult<()> {
        self.acked_proto = f;
        Ok(())
    }
    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok((self.rings.len() / 2) as u64)
    }
    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        tracing::debug!(port = %self.name, "SET_VRING_ENABLE {index} {enable}");
        let r = self.ring(index)?;
        if r.enabled != enable {
            r.enabled = enable;
            self.dirty = true;
        }
        Ok(())
    }
    fn get_config(&mut self, _: u32, _: u32, _: VhostUserConfigFlags) -> VuResult<Vec<u8>> {
        Err(refuse("GET_CONFIG is not supported"))
    }
    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> VuResult<()> {
        Err(refuse("SET_CONFIG is not supported"))
    }
    fn set_backend_req_fd(&mut self, _backend: Backend) {}
    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> VuResult<()> {
        Err(refuse("GPU_SET_SOCKET is not supported"))
    }
    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VuResult<File> {
        Err(refuse("GET_SHARED_OBJECT is not supported"))
    }
    fn get_inflight_fd(&mut self, _: &VhostUserInflight) -> VuResult<(VhostUserInflight, File)> {
        Err(refuse("GET_INFLIGHT_FD is not supported"))
    }
    fn set_inflight_fd(&mut self, _: &VhostUserInflight, _file: File) -> VuResult<()> {
        Err(refuse("SET_INFLIGHT_FD is not supported"))
    }
    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Ok(super::mem::MAX_REGIONS as u64)
    }
    fn add_mem_region(
        &mut self,
        _: &VhostUserSingleMemoryRegion,
        _fd: File,
        _postcopy_listening: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        Err(refuse("ADD_MEM_REG is not supported"))
    }
    fn remove_mem_region(&mut self, _: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        Err(refuse("REM_MEM_REG is not supported"))
    }
    fn set_device_state_fd(
        &mut self,
        _: VhostTransferStateDirection,
        _: VhostTransferStatePhase,
        _fd: File,
    ) -> VuResult<Option<File>> {
        Err(refuse("SET_DEVICE_STATE_FD is not supported"))
    }
    fn check_device_state(&mut self) -> VuResult<()> {
        Err(refuse("CHECK_DEVICE_STATE is not supported"))
    }
    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        Err(refuse("GET_SHMEM_CONFIG is not supported"))
    }
    fn set_log_base(&mut self, _: &VhostUserLog, _file: File) -> VuResult<()> {
        Err(refuse("SET_LOG_BASE is not supported"))
    }
}
