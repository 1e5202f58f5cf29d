//! A real Kubernetes control plane for tests and benchmarks: etcd and kube-apiserver
//! (and, on request, kube-scheduler) from the folder named by `KUBEBUILDER_ASSETS`
//! (the layout `setup-envtest` prints), on free loopback ports, with a temporary
//! data dir, certificates made in-process and a static admin token.
//!
//! ```ignore
//! let Some(cp) = control_plane::start_or_skip("my_test").await else { return };
//! control_plane::create_namespace(&cp.client(), "spark").await?;
//! control_plane::add_node(&cp.client(), &control_plane::node("n1", "16", "64Gi", 110, &[])).await?;
//! ```
//!
//! **Cleanup.** Dropping a [`ControlPlane`] kills and reaps every process it started and
//! removes its temporary dir; while the thread panics (a failing test) the dir is
//! kept and its path printed, so the logs can be read. A test binary killed outright
//! runs no destructor: each child then dies through its watchdog, an `sh` that reads a
//! pipe whose only writer is this process and kills the child when the pipe closes,
//! however this process ended. (The kernel's parent-death signal would need `prctl`
//! between fork and exec, which only an `unsafe` `pre_exec` hook can do.) The
//! temporary dir stays behind in that case, under the system temp dir as
//! `spark-fleet-cp-*`.
//!
//! **Concurrency.** At most [`max_running`] control planes run at once in one process
//! (2 unless `SPARK_FLEET_CONTROL_PLANES` says otherwise): [`ControlPlane::start`]
//! waits for a slot, so a test binary with many tests does not start one API server
//! per test at once on a small machine.
//!
//! What differs from a full cluster (no controllers, no kubelet; Node status must be
//! patched after the create; deleted pods need grace 0): see `shared/kube/README.md`.

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The environment variable naming the folder with `etcd` and `kube-apiserver`.
pub const ASSETS_VAR: &str = "KUBEBUILDER_ASSETS";
/// How many control planes may run at once in one process (default 2).
pub const LIMIT_VAR: &str = "SPARK_FLEET_CONTROL_PLANES";
/// Set to keep every control plane's files (logs, certificates, etcd data).
pub const KEEP_VAR: &str = "SPARK_FLEET_KEEP_CONTROL_PLANE";

/// Lines of a process's log quoted in an error.
const LOG_TAIL_LINES: usize = 25;
/// Attempts at starting with fresh ports when a port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

#[derive(Debug, Error)]
pub enum ControlPlaneError {
    #[error("no control plane: {0}")]
    Unavailable(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    #[error("{process} exited ({status}) before it was ready; the end of {log}:\n{tail}")]
    Exited {
        process: &'static str,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "{process} not ready after {waited:?} (last answer: {last}); the end of {log}:\n{tail}"
    )]
    NotReady {
        process: &'static str,
        waited: Duration,
        last: String,
        log: PathBuf,
        tail: String,
    },
    #[error("kubeconfig {file}: {message}")]
    Kubeconfig { file: PathBuf, message: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

impl ControlPlaneError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlPlaneError {
        let what = what.into();
        move |source| ControlPlaneError::Io { what, source }
    }

    /// A listen port was taken between our pick and the process's bind.
    fn port_clash(&self) -> bool {
        match self {
            ControlPlaneError::Exited { tail, .. } | ControlPlaneError::NotReady { tail, .. } => {
                tail.contains("address already in use")
            }
            _ => false,
        }
    }
}

/// How to start a control plane.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// kube-apiserver flags added after the defaults (for a single-valued flag, the
    /// later one wins), e.g. `--enable-admission-plugins=...`. Kubernetes 1.32 enables
    /// by default NamespaceLifecycle, LimitRanger, ServiceAccount, TaintNodesByCondition,
    /// PodSecurity, Priority, DefaultTolerationSeconds, DefaultStorageClass,
    /// StorageObjectInUseProtection, PersistentVolumeClaimResize, RuntimeClass,
    /// CertificateApproval, CertificateSigning, ClusterTrustBundleAttest,
    /// CertificateSubjectRestriction, DefaultIngressClass, MutatingAdmissionPolicy,
    /// MutatingAdmissionWebhook, ValidatingAdmissionPolicy, ValidatingAdmissionWebhook
    /// and ResourceQuota; the defaults here disable ServiceAccount and
    /// TaintNodesByCondition (no controllers run to satisfy them).
    pub apiserver_flags: Vec<String>,
    /// Keep the temporary dir (process logs, certificates, etcd data) after the drop
    /// and print its path. Also done when the dropping thread panics, or when
    /// `SPARK_FLEET_KEEP_CONTROL_PLANE` is set.
    pub keep_logs: bool,
    /// How long etcd and kube-apiserver each get to become ready (default 60 s).
    pub ready_timeout: Option<Duration>,
}

/// The most control planes running at once in this process.
pub fn max_running() -> usize {
    std::env::var(LIMIT_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(2)
        .max(1)
}

fn slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(max_running()))
}

/// A loopback port nobody listens on now, never handed out twice in this process.
fn free_port() -> Result<u16, ControlPlaneError> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .map_err(ControlPlaneError::io("binding a loopback port"))?;
        let port = listener
            .local_addr()
            .map_err(ControlPlaneError::io("reading a loopback port"))?
            .port();
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return Ok(port);
        }
    }
}

/// The last `n` lines of a log file (or why it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

/// The watchdog: waits for end of input (this process gone, or the watchdog no longer
/// wanted) and then kills the process whose id is `$1`.
const WATCHDOG: &str = "read _unused; kill -KILL \"$1\" 2>/dev/null";

/// A child process with its log file, killed and reaped on drop, and killed by its
/// watchdog if this process dies first (see the module comment).
pub struct Supervised {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    env_removed: Vec<String>,
    log: PathBuf,
    running: Option<Running>,
}

struct Running {
    child: Child,
    watchdog: Option<Child>,
}

impl Supervised {
    /// Describes a process; [`spawn`](Self::spawn) starts it. Its stdout and stderr are
    /// appended to `log`.
    pub fn new(
        name: &'static str,
        program: impl Into<PathBuf>,
        args: Vec<String>,
        log: impl Into<PathBuf>,
    ) -> Supervised {
        Supervised {
            name,
            program: program.into(),
            args,
            envs: Vec::new(),
            env_removed: Vec::new(),
            log: log.into(),
            running: None,
        }
    }

    /// An environment variable for the process (at the next spawn).
    pub fn env(mut self, key: &str, value: &str) -> Supervised {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// An environment variable this process has that the child must not inherit.
    pub fn env_remove(mut self, key: &str) -> Supervised {
        self.env_removed.push(key.to_owned());
        self
    }

    /// Starts the process (again, with the same arguments, after a kill).
    pub fn spawn(&mut self) -> Result<(), ControlPlaneError> {
        self.kill();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(ControlPlaneError::io(format!(
                "opening {}",
                self.log.display()
            )))?;
        let err_log = log
            .try_clone()
            .map_err(ControlPlaneError::io("duplicating a log file"))?;
        let mut command = Command::new(&self.program);
        for key in &self.env_removed {
            command.env_remove(key);
        }
        let child = command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(ControlPlaneError::io(format!(
                "starting {}",
                self.program.display()
            )))?;
        // Without `sh` there is no watchdog; the drop still cleans up.
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog", &child.id().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        self.running = Some(Running { child, watchdog });
        Ok(())
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The process id while it runs (or has exited and not yet been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.running
            .as_mut()
            .and_then(|r| r.child.try_wait().ok().flatten())
    }

    /// Sends SIGTERM (a graceful stop); [`wait`](Self::wait) reaps it.
    pub fn terminate(&mut self) {
        if let Some(r) = &mut self.running {
            if r.child.try_wait().ok().flatten().is_none() {
                // The child is not reaped, so its id cannot have been reused.
                if let Some(pid) = rustix::process::Pid::from_raw(r.child.id() as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
            }
        }
    }

    /// Waits up to `timeout` for the process to exit; reaps it and returns its status.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                self.kill();
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL and reap (no-op if not running). The watchdog goes first: it must not
    /// outlive the child's id.
    pub fn kill(&mut self) {
        if let Some(mut r) = self.running.take() {
            if let Some(mut w) = r.watchdog.take() {
                let _ = w.kill();
                let _ = w.wait();
            }
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }

    fn exited_error(&self, status: ExitStatus) -> ControlPlaneError {
        ControlPlaneError::Exited {
            process: self.name,
            status: status.to_string(),
            log: self.log.clone(),
            tail: log_tail(&self.log, LOG_TAIL_LINES),
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The folder named by `KUBEBUILDER_ASSETS` with `etcd` and `kube-apiserver` in it, or
/// one line saying why there is none.
pub fn assets() -> Result<PathBuf, String> {
    let dir = match std::env::var_os(ASSETS_VAR) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            return Err(format!(
                "{ASSETS_VAR} is not set (point it at a folder holding etcd and kube-apiserver, \
                 e.g. shared/kube, or what setup-envtest prints)"
            ))
        }
    };
    for bin in ["etcd", "kube-apiserver"] {
        let path = dir.join(bin);
        if !path.is_file() {
            return Err(format!("{ASSETS_VAR}={} has no {bin}", dir.display()));
        }
    }
    Ok(dir)
}

/// Starts a control plane, or prints one line on the process's stderr (past the test
/// harness's capture, so it shows) saying that `test` did not run and why, and
/// returns None. A control plane that is available but fails to start panics.
pub async fn start_or_skip(test: &str) -> Option<ControlPlane> {
    start_with_or_skip(test, Options::default()).await
}

/// As [`start_or_skip`], with options.
pub async fn start_with_or_skip(test: &str, options: Options) -> Option<ControlPlane> {
    if let Err(why) = assets() {
        skipped(test, &why);
        return None;
    }
    match ControlPlane::start_with(options).await {
        Ok(cp) => Some(cp),
        Err(e) => panic!("{test}: the control plane did not start: {e}"),
    }
}

/// Says on the process's stderr that `test` did not run, and why.
pub fn skipped(test: &str, why: &str) {
    // One write, so the test harness's own output cannot land inside the line.
    let line = format!("SKIPPED {test}: needs a real control plane: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A CA that signs serving certificates (kube-apiserver's; a webhook's).
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Result<Ca, ControlPlaneError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "spark-fleet test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key)?.pem();
        Ok(Ca {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// A serving certificate for `names` (DNS names or IP addresses): (cert, key) PEM.
    fn serving(&self, names: &[&str]) -> Result<(String, String), ControlPlaneError> {
        let key = KeyPair::generate()?;
        let sans: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn write(path: &Path, text: &str) -> Result<(), ControlPlaneError> {
    std::fs::write(path, text).map_err(ControlPlaneError::io(format!("writing {}", path.display())))
}

fn kubeconfig_text(server: &str, ca_file: &Path, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: test\n  context:\n    cluster: test\n    user: {user}\n\
         current-context: test\n",
        ca = ca_file.display()
    )
}

async fn client_from_kubeconfig(path: &Path) -> Result<Client, ControlPlaneError> {
    let bad = |message: String| ControlPlaneError::Kubeconfig {
        file: path.to_owned(),
        message,
    };
    let kc = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad(e.to_string()))?;
    Ok(Client::try_from(config)?)
}

/// One plain-HTTP GET on loopback (etcd's `/health`): the body, or why not.
async fn http_get(port: u16, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// A running etcd + kube-apiserver (+ kube-scheduler when started). See the module comment.
pub struct ControlPlane {
    assets: PathBuf,
    options: Options,
    dir: Option<tempfile::TempDir>,
    etcd: Supervised,
    apiserver: Supervised,
    scheduler: Option<Supervised>,
    etcd_port: u16,
    api_port: u16,
    token: String,
    ca: Ca,
    kubeconfig: PathBuf,
    client: Client,
    /// Held while running; given back on drop.
    slot: Option<SemaphorePermit<'static>>,
}

impl ControlPlane {
    /// The assets folder, or one line saying why there is none (see [`assets`]).
    pub fn assets() -> Result<PathBuf, String> {
        assets()
    }

    pub async fn start() -> Result<ControlPlane, ControlPlaneError> {
        Self::start_with(Options::default()).await
    }

    /// Starts etcd, then kube-apiserver, and waits for `/readyz`. Waits first for a slot
    /// (at most [`max_running`] at once).
    pub async fn start_with(options: Options) -> Result<ControlPlane, ControlPlaneError> {
        let assets = assets().map_err(ControlPlaneError::Unavailable)?;
        let slot = slots()
            .acquire()
            .await
            .map_err(|_| ControlPlaneError::Unavailable("slots closed".into()))?;
        let mut slot = Some(slot);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::launch(&assets, &options, &mut slot).await {
                Ok(cp) => return Ok(cp),
                Err(e) if e.port_clash() && attempt < PORT_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt. On failure the permit stays in `slot` for the next.
    async fn launch(
        assets: &Path,
        options: &Options,
        slot: &mut Option<SemaphorePermit<'static>>,
    ) -> Result<ControlPlane, ControlPlaneError> {
        let dir = tempfile::Builder::new()
            .prefix("spark-fleet-cp-")
            .tempdir()
            .map_err(ControlPlaneError::io("creating a temporary dir"))?;
        let path = dir.path().to_owned();
        let ca = Ca::new()?;
        let (cert, key) = ca.serving(&["127.0.0.1", "localhost"])?;
        let sa = KeyPair::generate().map_err(ControlPlaneError::from)?;
        let token = format!("{:032x}", rand::random::<u128>());
        for (name, text) in [
            ("ca.crt", ca.pem.clone()),
            ("apiserver.crt", cert),
            ("apiserver.key", key),
            ("sa.key", sa.serialize_pem()),
            ("sa.pub", sa.public_key_pem()),
            (
                "tokens.csv",
                format!("{token},admin,admin,system:masters\n"),
            ),
        ] {
            write(&path.join(name), &text)?;
        }
        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let api_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let p = |f: &str| path.join(f).display().to_string();
        let etcd = Supervised::new(
            "etcd",
            assets.join("etcd"),
            vec![
                "--name=test".into(),
                format!("--data-dir={}", p("etcd-data")),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            path.join("etcd.log"),
        );
        let mut apiserver_args = vec![
            "--advertise-address=127.0.0.1".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", p("apiserver-certs")),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", p("tokens.csv")),
            "--authorization-mode=Node,RBAC".into(),
            "--allow-privileged=true".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            format!("--etcd-servers={etcd_url}"),
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition".into(),
        ];
        apiserver_args.extend(options.apiserver_flags.iter().cloned());
        let apiserver = Supervised::new(
            "kube-apiserver",
            assets.join("kube-apiserver"),
            apiserver_args,
            path.join("kube-apiserver.log"),
        );
        let kubeconfig = path.join("kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_text(
                &format!("https://127.0.0.1:{api_port}"),
                &path.join("ca.crt"),
                "admin",
                &token,
            ),
        )?;
        let client = client_from_kubeconfig(&kubeconfig).await?;
        let permit = slot.take();
        let mut cp = ControlPlane {
            assets: assets.to_owned(),
            options: options.clone(),
            dir: Some(dir),
            etcd,
            apiserver,
            scheduler: None,
            etcd_port,
            api_port,
            token,
            ca,
            kubeconfig,
            client,
            slot: permit,
        };
        let started = async {
            cp.etcd.spawn()?;
            cp.wait_etcd().await?;
            cp.apiserver.spawn()?;
            cp.wait_apiserver().await
        }
        .await;
        match started {
            Ok(()) => Ok(cp),
            Err(e) => {
                // Give the slot back for the next attempt; the rest is dropped (killed).
                cp.etcd.kill();
                cp.apiserver.kill();
                if let Some(dir) = cp.dir.take() {
                    if e.port_clash() {
                        drop(dir);
                    } else {
                        // Kept: the error names the logs in it.
                        let _ = dir.keep();
                    }
                }
                *slot = cp.slot.take();
                Err(e)
            }
        }
    }

    fn ready_timeout(&self) -> Duration {
        self.options
            .ready_timeout
            .unwrap_or(Duration::from_secs(60))
    }

    async fn wait_etcd(&mut self) -> Result<(), ControlPlaneError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.etcd.exited() {
                return Err(self.etcd.exited_error(status));
            }
            let last = match http_get(self.etcd_port, "/health").await {
                Ok(body) if body.contains("\"health\":\"true\"") => return Ok(()),
                Ok(body) => body.lines().last().unwrap_or_default().to_owned(),
                Err(e) => e,
            };
            if started.elapsed() > self.ready_timeout() {
                return Err(ControlPlaneError::NotReady {
                    process: "etcd",
                    waited: started.elapsed(),
                    last,
                    log: self.etcd.log.clone(),
                    tail: log_tail(&self.etcd.log, LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_apiserver(&mut self) -> Result<(), ControlPlaneError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.apiserver.exited() {
                return Err(self.apiserver.exited_error(status));
            }
            if let Some(status) = self.etcd.exited() {
                return Err(self.etcd.exited_error(status));
            }
            let last = match self.readyz().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if started.elapsed() > self.ready_timeout() {
                return Err(ControlPlaneError::NotReady {
                    process: "kube-apiserver",
                    waited: started.elapsed(),
                    last,
                    log: self.apiserver.log.clone(),
                    tail: log_tail(&self.apiserver.log, LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /readyz` answered `ok`, or why not.
    pub async fn readyz(&self) -> Result<(), String> {
        let req = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(5), self.client.request_text(req)).await {
            Ok(Ok(body)) if body.trim() == "ok" => Ok(()),
            Ok(Ok(body)) => Err(body),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in 5 s".into()),
        }
    }

    /// A client authenticated as the admin (group `system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A kubeconfig file for the admin (for `spark-fleet run --kubeconfig`, kube-scheduler).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// The CA that signed the API server's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    /// The admin's bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The temporary dir (logs, certificates, etcd data).
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Some(d) => d.path(),
            None => Path::new(""),
        }
    }

    pub fn apiserver_log(&self) -> &Path {
        self.apiserver.log()
    }

    /// A serving certificate signed by this control plane's CA for `names` (DNS names
    /// or IP addresses): (certificate PEM, private key PEM). For servers the API server
    /// calls (admission webhooks): their `caBundle` is [`ca_pem`](Self::ca_pem).
    pub fn serving_cert(&self, names: &[&str]) -> Result<(String, String), ControlPlaneError> {
        self.ca.serving(names)
    }

    /// Writes a kubeconfig for `token` (as user `user`) into the temporary dir.
    pub fn kubeconfig_for(&self, user: &str, token: &str) -> Result<PathBuf, ControlPlaneError> {
        let path = self.dir().join(format!("kubeconfig-{user}"));
        write(
            &path,
            &kubeconfig_text(&self.url(), &self.dir().join("ca.crt"), user, token),
        )?;
        Ok(path)
    }

    /// A client authenticated with another bearer token (e.g. a ServiceAccount's, from
    /// [`service_account_token`](Self::service_account_token)).
    pub async fn client_with_token(&self, token: &str) -> Result<Client, ControlPlaneError> {
        let user = format!("u{:08x}", rand::random::<u32>());
        let path = self.kubeconfig_for(&user, token)?;
        client_from_kubeconfig(&path).await
    }

    /// A token for ServiceAccount `namespace/name` from the TokenRequest API (one hour).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, ControlPlaneError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        let req: TokenRequest = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": { "audiences": [], "expirationSeconds": 3600 }
        }))
        .map_err(|e| ControlPlaneError::Unavailable(e.to_string()))?;
        let got = api
            .create_token_request(name, &PostParams::default(), &req)
            .await?;
        Ok(got.status.map(|s| s.token).unwrap_or_default())
    }

    /// SIGKILLs kube-apiserver (etcd keeps running).
    pub fn kill_apiserver(&mut self) {
        self.apiserver.kill();
    }

    /// Starts kube-apiserver again (same port, certificates and etcd) and waits for `/readyz`.
    pub async fn restart_apiserver(&mut self) -> Result<(), ControlPlaneError> {
        self.apiserver.spawn()?;
        self.wait_apiserver().await
    }

    /// SIGKILLs etcd (kube-apiserver keeps running and answers errors meanwhile).
    pub fn kill_etcd(&mut self) {
        self.etcd.kill();
    }

    /// Starts etcd again (same data dir and port), waits for its health and then for
    /// kube-apiserver's `/readyz`.
    pub async fn restart_etcd(&mut self) -> Result<(), ControlPlaneError> {
        self.etcd.spawn()?;
        self.wait_etcd().await?;
        self.wait_apiserver().await
    }

    /// Starts kube-scheduler (from the assets folder) with client QPS / burst, leader
    /// election off, and waits for its `/healthz`. Replaces one already running.
    pub async fn start_kube_scheduler(
        &mut self,
        qps: f32,
        burst: i32,
    ) -> Result<(), ControlPlaneError> {
        let program = self.assets.join("kube-scheduler");
        if !program.is_file() {
            return Err(ControlPlaneError::Unavailable(format!(
                "{} has no kube-scheduler",
                self.assets.display()
            )));
        }
        let config = self.dir().join("kube-scheduler.yaml");
        write(
            &config,
            &format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
                 clientConnection:\n  kubeconfig: {}\n  qps: {qps}\n  burst: {burst}\n\
                 leaderElection:\n  leaderElect: false\n",
                self.kubeconfig.display()
            ),
        )?;
        let port = free_port()?;
        let mut s = Supervised::new(
            "kube-scheduler",
            program,
            vec![
                format!("--config={}", config.display()),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!(
                    "--cert-dir={}",
                    self.dir().join("scheduler-certs").display()
                ),
                format!("--authentication-kubeconfig={}", self.kubeconfig.display()),
                format!("--authorization-kubeconfig={}", self.kubeconfig.display()),
            ],
            self.dir().join("kube-scheduler.log"),
        );
        s.spawn()?;
        let mut health =
            kube::Config::new(format!("https://127.0.0.1:{port}").parse().map_err(
                |e: http::uri::InvalidUri| ControlPlaneError::Unavailable(e.to_string()),
            )?);
        // Its serving certificate is self-signed; only /healthz is read.
        health.accept_invalid_certs = true;
        let health = Client::try_from(health)?;
        let started = Instant::now();
        loop {
            if let Some(status) = s.exited() {
                return Err(s.exited_error(status));
            }
            let req = http::Request::get("/healthz")
                .body(Vec::new())
                .map_err(|e| ControlPlaneError::Unavailable(e.to_string()))?;
            let last = match health.request_text(req).await {
                Ok(body) if body.trim() == "ok" => break,
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            if started.elapsed() > self.ready_timeout() {
                return Err(ControlPlaneError::NotReady {
                    process: "kube-scheduler",
                    waited: started.elapsed(),
                    last,
                    log: s.log.clone(),
                    tail: log_tail(&s.log, LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.scheduler = Some(s);
        Ok(())
    }

    /// Stops kube-scheduler if it runs.
    pub fn stop_kube_scheduler(&mut self) {
        self.scheduler = None;
    }

    /// Process ids of every process running now (for cleanup checks).
    pub fn pids(&self) -> Vec<u32> {
        [
            Some(&self.etcd),
            Some(&self.apiserver),
            self.scheduler.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|p| p.pid())
        .collect()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The API server first, so it does not log etcd errors on its way out.
        self.scheduler = None;
        self.apiserver.kill();
        self.etcd.kill();
        let keep = self.options.keep_logs
            || std::env::var_os(KEEP_VAR).is_some_and(|v| !v.is_empty())
            || std::thread::panicking();
        if let Some(dir) = self.dir.take() {
            if keep {
                let path = dir.keep();
                let _ = writeln!(
                    std::io::stderr(),
                    "control plane files kept in {}",
                    path.display()
                );
            }
        }
    }
}

// ---- helpers every live test needs ------------------------------------------------

/// Creates namespace `name` (an existing one is fine).
pub async fn create_namespace(client: &Client, name: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name }
    }))
    .map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A Node with `cpu`, `memory` and `pods` as capacity and allocatable, and labels.
pub fn node(name: &str, cpu: &str, memory: &str, pods: u32, labels: &[(&str, &str)]) -> Node {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let amounts = json!({ "cpu": cpu, "memory": memory, "pods": pods.to_string() });
    match serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": labels },
        "status": { "capacity": amounts, "allocatable": amounts },
    })) {
        Ok(n) => n,
        Err(e) => panic!("a Node built from literals deserializes: {e}"),
    }
}

/// Creates `node` and then PATCHes its status (the API server drops `status` on create).
pub async fn add_node(client: &Client, node: &Node) -> Result<Node, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut spec_only = node.clone();
    let status = spec_only.status.take();
    api.create(&PostParams::default(), &spec_only).await?;
    let patch = json!({ "status": status });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Deletes a pod at once (grace 0: no kubelet runs to finish it). Gone already is fine.
pub async fn delete_pod_now(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes every pod of a namespace at once (grace 0).
pub async fn delete_pods_now(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default(),
    )
    .await
    .map(|_| ())
}

/// Polls `cond` every 50 ms until it holds (true) or `timeout` passes (false).
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads object `name` until `cond` holds for it (Some) or `timeout` passes (None).
/// Errors (a restarting server) count as not yet.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    mut cond: impl FnMut(&K) -> bool,
) -> Option<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(obj)) = api.get_opt(name).await {
            if cond(&obj) {
                return Some(obj);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `text` to a file in `dir` and returns its path (configs for child processes).
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, ControlPlaneError> {
    let path = dir.join(name);
    let mut f = File::create(&path).map_err(ControlPlaneError::io(format!(
        "creating {}",
        path.display()
    )))?;
    f.write_all(text.as_bytes())
        .map_err(ControlPlaneError::io(format!("writing {}", path.display())))?;
    Ok(path)
}
