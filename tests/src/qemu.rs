//! QEMU guests for the vhost-user end-to-end tests: a packaged Debian kernel, a tiny initramfs
//! built at test time (static busybox + the virtio-net modules of that kernel), and a driver
//! for the guest's serial console.
//!
//! Rules this module enforces:
//! - Nothing is downloaded: the kernel is `/boot/vmlinuz-<ver>` with `/lib/modules/<ver>`
//!   (Debian `linux-image-cloud-amd64`), busybox is `/bin/busybox` (`busybox-static`), the
//!   initramfs is written by `cpio -o -H newc` into `<target>/e2e-qemu/` once per process.
//! - The guest's `/init` loads `virtio_net` and what it depends on (order from `modules.dep`),
//!   gives `eth0` the address from the kernel command line (`usw.ip=`), prints `USW-READY` and
//!   runs a shell on the serial console (no echo), which the test drives line by line.
//! - Acceleration: KVM when a probe guest reaches `/init` with it within [`KVM_PROBE`], else
//!   TCG (nested KVM on some hosts hangs in early boot); `USWITCH_QEMU_ACCEL=kvm|tcg` skips the
//!   probe. The choice is printed. Under TCG, QEMU 7.2 crashes setting up MSI-X vector
//!   notifiers for vhost-user, so the NIC uses INTx there (`vectors=0`).
//! - Guest memory is shared with the switch: `memory-backend-file` on `/dev/hugepages`
//!   (`share=on`) when enough 2 MiB pages are free, else `memory-backend-memfd` (`share=on`).
//! - Every QEMU runs under a [`ProcGuard`] (killed by PID on drop); the console goes to its log
//!   file under `<target>/e2e-logs/`.
use crate::{free_hugepages, hugetlbfs_mounted, target_dir, ProcGuard};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a KVM probe guest may take to reach `/init`.
pub const KVM_PROBE: Duration = Duration::from_secs(20);
/// How long a guest may take to boot to `USW-READY` (TCG on a loaded 2-core machine).
pub const BOOT: Duration = Duration::from_secs(120);

/// The kernel and initramfs every guest boots.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub version: String,
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo USW-INIT
for m in $(cat /modules.order); do insmod /lib/modules/$m || echo "USW-INSMOD-FAILED $m"; done
ip=$(sed -n 's/.*usw\.ip=\([^ ]*\).*/\1/p' /proc/cmdline)
ip link set lo up
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
if [ -n "$ip" ] && [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr add "$ip" dev eth0
fi
ip -o link show eth0
echo USW-READY
stty -echo
exec setsid cttyhack sh
"#;

/// Order in which `module` and its dependencies must be loaded (from `modules.dep`).
fn load_order(dep: &str, module: &str, out: &mut Vec<String>) -> Result<(), String> {
    let line = dep
        .lines()
        .find(|l| {
            l.split(':')
                .next()
                .is_some_and(|p| p.rsplit('/').next() == Some(module))
        })
        .ok_or_else(|| format!("{module} not in modules.dep"))?;
    let (path, deps) = line.split_once(':').unwrap_or((line, ""));
    for d in deps.split_whitespace() {
        let name = d.rsplit('/').next().unwrap_or(d);
        load_order(dep, name, out)?;
    }
    if !out.iter().any(|p| p == path) {
        out.push(path.to_string());
    }
    Ok(())
}

fn build_image() -> Result<GuestImage, String> {
    let version = std::fs::read_dir("/lib/modules")
        .map_err(|e| format!("/lib/modules: {e} (apt-get install linux-image-cloud-amd64)"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|v| Path::new(&format!("/boot/vmlinuz-{v}")).exists())
        .max()
        .ok_or("no /boot/vmlinuz-<ver> with /lib/modules/<ver> (apt-get install linux-image-cloud-amd64)")?;
    let busybox = Path::new("/bin/busybox");
    // A dynamically linked busybox names its loader (PT_INTERP); the static one does not.
    let bb = std::fs::read(busybox).unwrap_or_default();
    if bb.is_empty() || bb.windows(14).any(|w| w == b"/lib64/ld-linu") {
        return Err(
            "/bin/busybox is missing or not static (apt-get install busybox-static)".into(),
        );
    }
    let mods = format!("/lib/modules/{version}");
    let dep = std::fs::read_to_string(format!("{mods}/modules.dep"))
        .map_err(|e| format!("{mods}/modules.dep: {e}"))?;
    let mut order = Vec::new();
    for m in ["virtio_pci.ko", "virtio_net.ko"] {
        load_order(&dep, m, &mut order)?;
    }
    let dir = target_dir().join("e2e-qemu");
    let root = dir.join(format!("root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "dev", "proc", "sys", "tmp", "lib/modules"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| format!("{}: {e}", root.display()))?;
    }
    let io = |e: std::io::Error| format!("building the initramfs: {e}");
    std::fs::copy(busybox, root.join("bin/busybox")).map_err(io)?;
    let mut names = Vec::new();
    for p in &order {
        let name = p.rsplit('/').next().unwrap_or(p).to_string();
        std::fs::copy(format!("{mods}/{p}"), root.join("lib/modules").join(&name)).map_err(io)?;
        names.push(name);
    }
    std::fs::write(root.join("modules.order"), names.join("\n") + "\n").map_err(io)?;
    std::fs::write(root.join("init"), INIT).map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755))
        .map_err(io)?;
    let initrd = dir.join(format!("initrd-{}.cpio", std::process::id()));
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
            root.display(),
            initrd.display()
        ))
        .status()
        .map_err(|e| format!("cpio: {e} (apt-get install cpio)"))?;
    let _ = std::fs::remove_dir_all(&root);
    if !st.success() {
        return Err("cpio failed (apt-get install cpio)".into());
    }
    eprintln!(
        "qemu: guest kernel {version}, initramfs {} (modules: {})",
        initrd.display(),
        names.join(" ")
    );
    Ok(GuestImage {
        kernel: PathBuf::from(format!("/boot/vmlinuz-{version}")),
        initrd,
        version,
    })
}

/// The guest image, built once per process.
pub fn guest_image() -> Result<GuestImage, String> {
    static IMG: OnceLock<Result<GuestImage, String>> = OnceLock::new();
    IMG.get_or_init(build_image).clone()
}

/// QEMU acceleration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

fn probe_kvm(img: &GuestImage) -> bool {
    if !Path::new("/dev/kvm").exists() {
        eprintln!("qemu: no /dev/kvm");
        return false;
    }
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine",
        "q35,accel=kvm",
        "-cpu",
        "host,-arch-capabilities",
    ])
    .args(["-m", "128M", "-smp", "1", "-nodefaults", "-no-user-config"])
    .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
    .arg("-kernel")
    .arg(&img.kernel)
    .arg("-initrd")
    .arg(&img.initrd)
    .args(["-append", "console=ttyS0 quiet panic=-1"]);
    let Ok(mut p) = ProcGuard::spawn("qemu-kvm-probe", cmd, false) else {
        return false;
    };
    let ok = p.wait_output(0, "USW-INIT", KVM_PROBE).is_ok();
    if !ok {
        eprintln!(
            "qemu: KVM probe guest did not reach /init in {KVM_PROBE:?} (log {})",
            p.log_path().display()
        );
    }
    ok
}

/// KVM if it boots a guest here, else TCG (decided once per process).
pub fn accel() -> Accel {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    *ACCEL.get_or_init(|| {
        let a = match std::env::var("USWITCH_QEMU_ACCEL").as_deref() {
            Ok("kvm") => Accel::Kvm,
            Ok("tcg") => Accel::Tcg,
            _ => match guest_image() {
                Ok(img) if probe_kvm(&img) => Accel::Kvm,
                _ => Accel::Tcg,
            },
        };
        eprintln!("qemu: using {a:?}");
        a
    })
}

/// One vhost-user NIC of a guest.
#[derive(Debug, Clone)]
pub struct Nic {
    pub socket: String,
    /// QEMU listens (`server=on`); uswitch is then the vhost-user client.
    pub qemu_server: bool,
    pub queues: u16,
    pub mac: String,
}

/// Builds a QEMU command line.
pub struct QemuBuilder {
    tag: String,
    mem_mb: u32,
    smp: u32,
    ip: String,
    nics: Vec<Nic>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl QemuBuilder {
    pub fn new(tag: &str, ip: &str) -> QemuBuilder {
        QemuBuilder {
            tag: tag.to_string(),
            mem_mb: 256,
            smp: 1,
            ip: ip.to_string(),
            nics: Vec::new(),
        }
    }

    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }

    pub fn nic(mut self, nic: Nic) -> Self {
        self.nics.push(nic);
        self
    }

    /// The full argument list (without the binary), as run.
    pub fn args(&self, img: &GuestImage, accel: Accel) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |v: &[&str]| a.extend(v.iter().map(|s| s.to_string()));
        match accel {
            Accel::Kvm => push(&[
                "-machine",
                "q35,accel=kvm",
                "-cpu",
                "host,-arch-capabilities",
            ]),
            Accel::Tcg => push(&["-machine", "q35", "-accel", "tcg"]),
        }
        let mem = format!("{}M", self.mem_mb);
        let smp = self.smp.to_string();
        push(&["-m", &mem, "-smp", &smp, "-nodefaults", "-no-user-config"]);
        push(&["-display", "none", "-serial", "stdio"]);
        let pages_needed = u64::from(self.mem_mb) / 2;
        let backend = if hugetlbfs_mounted() && free_hugepages() >= pages_needed + 64 {
            format!("memory-backend-file,id=mem0,size={mem},mem-path=/dev/hugepages,share=on")
        } else {
            format!("memory-backend-memfd,id=mem0,size={mem},share=on")
        };
        push(&["-object", &backend, "-numa", "node,memdev=mem0"]);
        let kernel = img.kernel.to_string_lossy().into_owned();
        let initrd = img.initrd.to_string_lossy().into_owned();
        let append = format!(
            "console=ttyS0 quiet panic=-1 ipv6.disable=1 usw.ip={}",
            self.ip
        );
        push(&["-kernel", &kernel, "-initrd", &initrd, "-append", &append]);
        for (i, n) in self.nics.iter().enumerate() {
            let server = if n.qemu_server {
                ",server=on,wait=off"
            } else {
                ""
            };
            let chardev = format!("socket,id=chr{i},path={}{server}", n.socket);
            let netdev = format!("vhost-user,id=net{i},chardev=chr{i},queues={}", n.queues);
            let mut dev = format!("virtio-net-pci,netdev=net{i},mac={}", n.mac);
            if n.queues > 1 {
                dev.push_str(",mq=on");
            }
            match accel {
                Accel::Tcg => dev.push_str(",vectors=0"),
                Accel::Kvm if n.queues > 1 => {
                    dev.push_str(&format!(",vectors={}", 2 * u32::from(n.queues) + 2))
                }
                Accel::Kvm => {}
            }
            push(&["-chardev", &chardev, "-netdev", &netdev, "-device", &dev]);
        }
        a
    }

    /// Starts QEMU and waits for the guest's `USW-READY`.
    pub fn start(&self) -> Result<Qemu, String> {
        let img = guest_image()?;
        let accel = accel();
        let args = self.args(&img, accel);
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(&args);
        let name = format!("qemu-{}-{}", self.tag, SEQ.fetch_add(1, Ordering::Relaxed));
        let proc = ProcGuard::spawn(&name, cmd, true).map_err(|e| {
            format!("cannot start qemu-system-x86_64: {e} (apt-get install qemu-system-x86)")
        })?;
        let mut q = Qemu {
            proc,
            accel,
            args,
            seq: 0,
        };
        q.wait_ready(0)?;
        Ok(q)
    }
}

/// A running guest.
pub struct Qemu {
    pub proc: ProcGuard,
    pub accel: Accel,
    /// The QEMU arguments, for the README / logs.
    pub args: Vec<String>,
    seq: u32,
}

impl Qemu {
    /// Waits for `USW-READY` after byte `from` of the console.
    pub fn wait_ready(&mut self, from: usize) -> Result<(), String> {
        let t0 = Instant::now();
        self.proc
            .wait_output(from, "USW-READY", BOOT)
            .map_err(|e| format!("guest did not boot: {e}\n{}", self.proc.tail(30)))?;
        let out = self.proc.output_since(from);
        if out.contains("USW-INSMOD-FAILED") || !out.contains("eth0") {
            return Err(format!("guest has no eth0:\n{}", self.proc.tail(30)));
        }
        eprintln!(
            "qemu: guest ready in {:.1} s ({:?}, console {})",
            t0.elapsed().as_secs_f64(),
            self.accel,
            self.proc.log_path().display()
        );
        Ok(())
    }

    /// Runs a shell command in the guest; returns (exit code, output).
    pub fn sh(&mut self, line: &str, timeout: Duration) -> Result<(i32, String), String> {
        self.seq += 1;
        let n = self.seq;
        let from = self.proc.output_len();
        // The end marker is computed by the shell, so an echo of the line never matches it.
        self.proc
            .send_line(&format!("{line}; echo \"@@rc=$? end=$(({n}+0))@@\""))
            .map_err(|e| format!("guest console: {e}"))?;
        let end = format!(" end={n}@@");
        self.proc
            .wait_output(from, &end, timeout)
            .map_err(|e| format!("guest command {line:?}: {e}\n{}", self.proc.tail(20)))?;
        let out = self.proc.output_since(from);
        let cut = out.find(&end).unwrap_or(out.len());
        let head = &out[..cut];
        let rc_at = head.rfind("@@rc=").unwrap_or(head.len());
        let rc = head[rc_at..]
            .trim_start_matches("@@rc=")
            .trim()
            .parse()
            .unwrap_or(-1);
        Ok((rc, head[..rc_at].to_string()))
    }

    /// `ping -c COUNT DST` from the guest; returns the number of replies.
    pub fn ping(&mut self, dst: &str, count: u32) -> u32 {
        let (_, out) = self
            .sh(
                &format!("ping -c {count} -i 0.2 -W 2 {dst}"),
                Duration::from_secs(u64::from(count) + 20),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        out.lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// (rx_packets, tx_packets) of the guest's eth0.
    pub fn eth0_counts(&mut self) -> (u64, u64) {
        let (_, out) = self
            .sh(
                "cat /sys/class/net/eth0/statistics/rx_packets /sys/class/net/eth0/statistics/tx_packets",
                Duration::from_secs(20),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let v: Vec<u64> = out
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(v.len() >= 2, "guest counters: {out:?}");
        (v[v.len() - 2], v[v.len() - 1])
    }

    /// Reboots the guest (`reboot -f`: a virtio reset, QEMU keeps running) and waits for it.
    pub fn reboot(&mut self) -> Result<(), String> {
        let from = self.proc.output_len();
        self.proc
            .send_line("reboot -f")
            .map_err(|e| format!("guest console: {e}"))?;
        self.wait_ready(from)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// The command line as a shell would show it.
    pub fn command_line(&self) -> String {
        std::iter::once("qemu-system-x86_64".to_string())
            .chain(self.args.iter().map(|a| {
                if a.contains(' ') {
                    format!("\"{a}\"")
                } else {
                    a.clone()
                }
            }))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
