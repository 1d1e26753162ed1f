//! Test harness: the watchpost binary, temp dirs, free ports, waiting on conditions, real servers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The store in `data`, or `None` while the daemon has not created it yet. Any other error fails the test: a
/// helper that turned errors into "empty" would let "nothing here" assertions pass for the wrong reason.
pub(crate) fn store(data: &Path) -> Option<watchpost::store::Store> {
    if !data.join(watchpost::store::DB_FILE).exists() {
        return None;
    }
    Some(watchpost::store::Store::open_existing(data).expect("the store opens"))
}

/// Run `f` on the store; `default` while it does not exist yet; store errors fail the test.
pub(crate) fn with_store<T>(
    data: &Path,
    default: T,
    f: impl FnOnce(&mut watchpost::store::Store) -> Result<T, watchpost::store::StoreError>,
) -> T {
    match store(data) {
        Some(mut s) => f(&mut s).expect("store query"),
        None => default,
    }
}

/// Every stored value of `sensor`, oldest first.
#[allow(dead_code)] // not every test file reads values
pub(crate) fn stored_values(data: &Path, sensor: &str) -> Vec<f64> {
    with_store(data, Vec::new(), |s| {
        let mut v = Vec::new();
        s.export(watchpost::model::Timestamp(0), Some(sensor), |r| {
            v.push(r.value)
        })?;
        Ok(v)
    })
}

/// Path of the built binary.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_watchpost"))
}

/// A free loopback TCP port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A loopback TCP peer that serves each connection with `serve` on its own thread; returns its port and the count
/// of connections it accepted.
pub(crate) fn counting_peer(
    serve: fn(std::net::TcpStream),
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&n);
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || serve(c));
        }
    });
    (port, n)
}

/// Poll `f` until it returns `Some` or `timeout` passes.
pub(crate) fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed on drop.
pub(crate) struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Wait for exit up to `timeout`; returns the exit code.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `watchpost run --config cfg`, logging to `dir/watchpost.log`.
pub(crate) fn start_daemon(cfg: &Path, dir: &Path) -> Proc {
    let log = dir.join(format!("watchpost-{}.log", fastrand::u32(..)));
    let f = std::fs::File::create(&log).expect("log");
    let child = Command::new(bin())
        .args(["run", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn watchpost");
    Proc { child, log }
}

/// Run the binary to completion.
pub(crate) fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run watchpost");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Find an executable on PATH.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A server the test needs. A test that cannot run fails with the install hint: it never passes silently.
pub(crate) fn require(name: &str) -> Option<PathBuf> {
    match which(name) {
        Some(p) => Some(p),
        None => panic!(
            "{name} is not installed: this test needs the real server. `bash .ci/run` installs every test server \
             (Debian packages victoria-metrics, mosquitto, mosquitto-clients, openssl, socat; pymodbus in a venv)."
        ),
    }
}

/// A real VictoriaMetrics server on a free port (InfluxDB v2 write API at /api/v2/write).
pub(crate) struct Vm {
    pub proc: Proc,
    pub port: u16,
    pub dir: PathBuf,
}

impl Vm {
    pub(crate) fn start(dir: &Path, port: u16) -> Option<Vm> {
        let exe = require("victoria-metrics")?;
        let data = dir.join("vm-data");
        let log = dir.join(format!("vm-{}.log", fastrand::u32(..)));
        let f = std::fs::File::create(&log).expect("log");
        let child = Command::new(exe)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", data.display()))
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            // InfluxDB overwrites a point written again (same series and timestamp): a batch re-sent after a crash
            // (at-least-once) stays one sample. VictoriaMetrics does the same with deduplication on.
            .arg("-dedup.minScrapeInterval=1ms")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn victoria-metrics");
        let vm = Vm {
            proc: Proc { child, log },
            port,
            dir: dir.to_path_buf(),
        };
        wait_for(Duration::from_secs(20), "VictoriaMetrics health", || {
            http_get(port, "/health")
                .filter(|b| b.contains("OK"))
                .map(|_| ())
        });
        Some(vm)
    }

    /// Export all samples of `metric` as (labels json, values, timestamps) lines.
    pub(crate) fn export(&self, matcher: &str) -> Vec<serde_json::Value> {
        let body = http_post_form(
            self.port,
            "/api/v1/export",
            &format!("match[]={}", urlencode(matcher)),
        )
        .unwrap_or_default();
        body.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Samples across all series matching `matcher`, and distinct (series, timestamp) pairs among them.
    pub(crate) fn count_distinct(&self, matcher: &str) -> (usize, usize) {
        let mut total = 0;
        let mut distinct = 0;
        for s in self.export(matcher) {
            if let Some(ts) = s["timestamps"].as_array() {
                total += ts.len();
                let set: std::collections::HashSet<i64> =
                    ts.iter().filter_map(|t| t.as_i64()).collect();
                distinct += set.len();
            }
        }
        (total, distinct)
    }

    /// Count of samples across all series matching `matcher`.
    pub(crate) fn count(&self, matcher: &str) -> usize {
        self.export(matcher)
            .iter()
            .map(|s| s["values"].as_array().map(|a| a.len()).unwrap_or(0))
            .sum()
    }
}

pub(crate) use watchpost::sink::influxdb::urlencode;

fn http(port: u16, req: String) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // De-chunk.
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(tail.get(..n)?);
            rest = tail.get(n + 2..)?;
        }
        return Some(out);
    }
    Some(body.to_string())
}

/// Status code and body of a GET.
pub(crate) fn http_get_status(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    http(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

pub(crate) fn http_post_form(port: u16, path: &str, body: &str) -> Option<String> {
    http(
        port,
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Test certificates: a CA, a server cert for localhost/127.0.0.1, a client cert (CN=gateway-01).
pub(crate) struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub(crate) fn make(dir: &Path) -> Option<Certs> {
        require("openssl")?;
        let d = dir.join("certs");
        std::fs::create_dir_all(&d).expect("mkdir");
        let sh = format!(
            r#"set -e
cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=test-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out server.crt -extfile server.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=gateway-01" 2>/dev/null
printf "extendedKeyUsage=clientAuth\n" > client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out client.crt -extfile client.ext 2>/dev/null
"#,
            d = d.display()
        );
        let ok = Command::new("bash")
            .arg("-c")
            .arg(sh)
            .status()
            .expect("openssl")
            .success();
        assert!(ok, "certificate generation failed");
        Some(Certs { dir: d })
    }
    pub(crate) fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
}

/// A real mosquitto broker with its own config file on free loopback ports.
pub(crate) struct Mosquitto {
    pub proc: Option<Proc>,
    pub port: u16,
    pub conf: PathBuf,
    pub dir: PathBuf,
}

impl Mosquitto {
    /// `extra` is appended to the config (more listeners). The first listener is plain and anonymous on `port`.
    pub(crate) fn start(dir: &Path, extra: &str, persistence: bool) -> Option<Mosquitto> {
        require("mosquitto")?;
        let port = free_port();
        let mdir = dir.join(format!("mqtt-{port}"));
        std::fs::create_dir_all(&mdir).expect("mkdir");
        let conf = mdir.join("mosquitto.conf");
        let text = format!(
            "per_listener_settings true\npersistence {}\npersistence_location {}/\nautosave_interval 1\nuser root\nlog_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\nmax_queued_messages 100000\nmax_inflight_messages 0\n\nlistener {port} 127.0.0.1\nallow_anonymous true\n{extra}\n",
            if persistence { "true" } else { "false" },
            mdir.display()
        );
        std::fs::write(&conf, text).expect("conf");
        let mut m = Mosquitto {
            proc: None,
            port,
            conf,
            dir: mdir,
        };
        m.restart();
        Some(m)
    }

    pub(crate) fn restart(&mut self) {
        let log = self.dir.join(format!("broker-{}.log", fastrand::u32(..)));
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.proc = Some(Proc { child, log });
        let port = self.port;
        wait_for(Duration::from_secs(10), "mosquitto listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
    }

    /// Stop with SIGTERM (it saves its persistence file) and wait.
    pub(crate) fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal(libc::SIGTERM);
            p.wait_exit(Duration::from_secs(10));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A subscriber collecting `(topic, payload, retained)`; reconnects by itself.
pub(crate) struct Sub {
    pub msgs: std::sync::Arc<std::sync::Mutex<Vec<(String, String, bool)>>>,
    pub client: rumqttc::Client,
    /// SUBACKs received (or, on a resumed session, the number of topics).
    subscribed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    topics: usize,
}

impl Sub {
    pub(crate) fn start(port: u16, id: &str, clean: bool, topics: &[&str]) -> Sub {
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(clean);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(o, 1000);
        let msgs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let m2 = std::sync::Arc::clone(&msgs);
        let c2 = client.clone();
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let n_topics = topics.len();
        let subscribed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let s2 = std::sync::Arc::clone(&subscribed);
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                        if ack.session_present {
                            s2.store(topics.len(), std::sync::atomic::Ordering::SeqCst);
                        } else {
                            for t in &topics {
                                let _ = c2.try_subscribe(t.clone(), rumqttc::QoS::AtLeastOnce);
                            }
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if let Ok(mut m) = m2.lock() {
                            m.push((
                                p.topic.clone(),
                                String::from_utf8_lossy(&p.payload).into_owned(),
                                p.retain,
                            ));
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        let sub = Sub {
            msgs,
            client,
            subscribed,
            topics: n_topics,
        };
        sub.wait_subscribed();
        sub
    }
    /// Wait until the broker acknowledged every subscription (SUBACK), so nothing published after this is missed.
    pub(crate) fn wait_subscribed(&self) {
        wait_for(Duration::from_secs(10), "SUBACK", || {
            (self.subscribed.load(std::sync::atomic::Ordering::SeqCst) >= self.topics).then_some(())
        });
    }
    pub(crate) fn on(&self, topic_suffix: &str) -> Vec<(String, bool)> {
        self.msgs
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(t, _, _)| t.ends_with(topic_suffix))
                    .map(|(_, p, r)| (p.clone(), *r))
                    .collect()
            })
            .unwrap_or_default()
    }
    pub(crate) fn stop(&self) {
        let _ = self.client.try_disconnect();
    }
}

/// Python with pymodbus (the venv .ci/run creates, or WATCHPOST_TEST_PYTHON).
pub(crate) fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WATCHPOST_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from("/var/cache/watchpost/venv/bin/python");
    if venv.is_file() {
        return Some(venv);
    }
    panic!(
        "no Python with pymodbus and aiosmtpd: this test needs a real Modbus peer or SMTP server. `bash .ci/run` creates the venv \
         (/var/cache/watchpost/venv) or set WATCHPOST_TEST_PYTHON."
    )
}

/// A pymodbus server (TCP port or RTU tty) serving `map`.
pub(crate) fn modbus_server(
    map: &Path,
    tcp: Option<u16>,
    rtu: Option<&Path>,
    mute_dir: &Path,
) -> Option<Proc> {
    let py = python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/modbus_server.py");
    let log = mute_dir.join(format!("pymodbus-{}.log", fastrand::u32(..)));
    let mut cmd = Command::new(py);
    cmd.arg(script)
        .arg("--map")
        .arg(map)
        .arg("--mute-dir")
        .arg(mute_dir);
    if let Some(p) = tcp {
        cmd.arg("--tcp").arg(p.to_string());
    }
    if let Some(t) = rtu {
        cmd.arg("--rtu").arg(t);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn pymodbus");
    let p = Proc { child, log };
    if let Some(port) = tcp {
        wait_for(Duration::from_secs(20), "pymodbus listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
    } else if let Some(tty) = rtu {
        // Listening on a serial line is having it open: wait until the server holds the tty's device.
        wait_for(Duration::from_secs(20), "pymodbus holding the tty", || {
            let dev = std::fs::canonicalize(tty).ok()?;
            std::fs::read_dir(format!("/proc/{}/fd", p.pid()))
                .ok()?
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == dev))
                .then_some(())
        });
    }
    Some(p)
}

/// How the test SMTP server secures its connections.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum SmtpMode {
    Plain,
    Starttls,
    Smtps,
}

/// A real SMTP server (aiosmtpd) writing each accepted mail, decoded, as JSON into `out`.
pub(crate) struct Smtp {
    pub proc: Proc,
    pub port: u16,
    pub out: PathBuf,
}

impl Smtp {
    /// Start on `port`; `certs` for STARTTLS/SMTPS, `auth` as `user:password`.
    pub(crate) fn start(
        dir: &Path,
        port: u16,
        mode: SmtpMode,
        certs: Option<&Certs>,
        auth: Option<&str>,
    ) -> Smtp {
        let py = python().expect("python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let out = dir.join("mails");
        let log = dir.join(format!("smtp-{}.log", fastrand::u32(..)));
        let mut cmd = Command::new(py);
        cmd.arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(&out);
        if let Some(c) = certs {
            cmd.arg("--cert")
                .arg(c.path("server.crt"))
                .arg("--key")
                .arg(c.path("server.key"));
        }
        match mode {
            SmtpMode::Plain => {}
            SmtpMode::Starttls => {
                cmd.arg("--starttls");
            }
            SmtpMode::Smtps => {
                cmd.arg("--smtps");
            }
        }
        if let Some(a) = auth {
            cmd.arg("--auth").arg(a);
        }
        let child = cmd
            .stdout(std::fs::File::create(dir.join("smtp-ready")).expect("ready file"))
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn aiosmtpd");
        let proc = Proc { child, log };
        let ready = dir.join("smtp-ready");
        wait_for(Duration::from_secs(20), "aiosmtpd listening", || {
            std::fs::read_to_string(&ready)
                .ok()
                .filter(|s| s.contains("ready"))
                .map(|_| ())
        });
        Smtp { proc, port, out }
    }

    /// Every accepted mail so far, in order.
    pub(crate) fn mails(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| {
                serde_json::from_str(&std::fs::read_to_string(f).expect("mail file"))
                    .expect("mail json")
            })
            .collect()
    }

    /// Wait until at least `n` mails arrived; returns them all.
    pub(crate) fn wait_mails(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        wait_for(timeout, &format!("{n} mail(s)"), || {
            let m = self.mails();
            (m.len() >= n).then_some(m)
        })
    }
}

/// A TCP proxy to `target` that cuts every connection through it each `period`; returns its port and how many
/// connections it has accepted.
pub(crate) fn cutting_proxy(
    target: u16,
    period: Duration,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let live: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Default::default();
    let (acc, live2) = (
        std::sync::Arc::clone(&accepted),
        std::sync::Arc::clone(&live),
    );
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            acc.fetch_add(1, Ordering::SeqCst);
            let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            for s in [&c, &up] {
                if let (Ok(mut v), Ok(s2)) = (live2.lock(), s.try_clone()) {
                    v.push(s2);
                }
            }
            let pipe = |mut a: std::net::TcpStream, mut b: std::net::TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Both);
                });
            };
            if let (Ok(c2), Ok(u2)) = (c.try_clone(), up.try_clone()) {
                pipe(c2, up);
                pipe(u2, c);
            }
        }
    });
    std::thread::spawn(move || loop {
        std::thread::sleep(period);
        if let Ok(mut v) = live.lock() {
            for s in v.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    });
    (port, accepted)
}
