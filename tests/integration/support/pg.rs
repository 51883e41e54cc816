//! Finding, or starting, the PostgreSQL server the tests use: once per test process.
//!
//! In order:
//! 1. `DATABASE_URL`, when set. It must be a `postgresql://` URL and the server must answer:
//!    otherwise every PostgreSQL test fails, naming the URL (password hidden).
//! 2. `postgresql://postgres@127.0.0.1:5432/postgres`, when a server answers there (skipped
//!    when `ORM_TEST_PG_FORCE_LOCAL_CLUSTER=1`).
//! 3. A throwaway cluster: `initdb` into a new temporary directory (as the `postgres` OS user
//!    when the tests run as root), started with `pg_ctl` on a free port of 127.0.0.1 with
//!    trust authentication. A watchdog shell process stops it (`pg_ctl stop -m immediate`) and
//!    deletes the directory once the test process has exited.
//!
//! When none works, the tests fail with a message listing what was tried: PostgreSQL tests are
//! never skipped.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The URL tried when `DATABASE_URL` is not set.
pub const DEFAULT_URL: &str = "postgresql://postgres@127.0.0.1:5432/postgres";

/// The environment variable that skips [`DEFAULT_URL`] and starts a throwaway cluster.
pub const FORCE_LOCAL_CLUSTER: &str = "ORM_TEST_PG_FORCE_LOCAL_CLUSTER";

/// A PostgreSQL server the tests may create schemas in.
#[derive(Debug)]
pub struct Server {
    /// The URL of a database on it, connecting as a user that may create schemas.
    pub url: String,
    /// Where the server came from, for messages.
    pub origin: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// The server, found (or started) by the first caller in the process.
///
/// # Panics
///
/// When no server could be found or started; every later call panics with the same message.
pub fn server() -> &'static Server {
    match SERVER.get_or_init(find) {
        Ok(server) => server,
        Err(message) => panic!("{message}"),
    }
}

fn find() -> Result<Server, String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(format!(
                "DATABASE_URL must be a postgresql:// URL for the integration tests, got `{}`",
                redact(&url)
            ));
        }
        return match probe(&url) {
            Ok(()) => Ok(Server {
                url,
                origin: "DATABASE_URL".to_owned(),
            }),
            Err(e) => Err(format!(
                "DATABASE_URL is set to `{}` but PostgreSQL does not answer there: {e}",
                redact(&url)
            )),
        };
    }
    let mut tried = vec!["DATABASE_URL: not set".to_owned()];
    if force_local_cluster() {
        tried.push(format!(
            "{DEFAULT_URL}: skipped because {FORCE_LOCAL_CLUSTER} is set"
        ));
    } else {
        match probe(DEFAULT_URL) {
            Ok(()) => {
                return Ok(Server {
                    url: DEFAULT_URL.to_owned(),
                    origin: DEFAULT_URL.to_owned(),
                })
            }
            Err(e) => tried.push(format!("{DEFAULT_URL}: {e}")),
        }
    }
    match start_cluster() {
        Ok(server) => Ok(server),
        Err(e) => {
            tried.push(format!("a throwaway cluster: {e}"));
            let mut message = "no PostgreSQL server for the integration tests. Tried:\n".to_owned();
            for t in &tried {
                let _ = writeln!(message, "  - {t}");
            }
            message.push_str(
                "Set DATABASE_URL=postgresql://user@host:port/db, run a server on 127.0.0.1:5432 \
                 with trust authentication for user postgres, or install the PostgreSQL server \
                 binaries (`apt-get install postgresql`) so that a throwaway cluster can be started.",
            );
            Err(message)
        }
    }
}

fn force_local_cluster() -> bool {
    std::env::var(FORCE_LOCAL_CLUSTER).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Connects to `url` and runs `SELECT 1`.
pub fn probe(url: &str) -> Result<(), String> {
    let mut config: postgres::Config = url.parse().map_err(|e| chain(&e))?;
    config.connect_timeout(Duration::from_secs(5));
    let mut client = config.connect(postgres::NoTls).map_err(|e| chain(&e))?;
    client.simple_query("SELECT 1").map_err(|e| chain(&e))?;
    Ok(())
}

/// An error and its sources, joined by `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// The URL with its password, if any, replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The throwaway cluster.

fn start_cluster() -> Result<Server, String> {
    let (initdb, pg_ctl) = find_binaries()?;
    let as_root = running_as_root();
    if as_root
        && !Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Err("running as root, and there is no `postgres` OS user to run initdb as".into());
    }
    // The postgres user must be able to reach the directory: use /tmp when running as root,
    // whatever TMPDIR says.
    let base = if as_root {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = base.join(format!("orm-test-pg-{}-{nanos}", std::process::id()));
    fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // From here on the watchdog removes the directory when this process exits.
    let data = dir.join("data");
    let log = dir.join("server.log");
    spawn_watchdog(&pg_ctl, &data, &dir, as_root)?;
    if as_root {
        run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
    }
    run(&mut pg_command(
        as_root,
        &initdb,
        &[
            "-D",
            path_str(&data)?,
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    ))?;
    let port = free_port()?;
    let settings = format!(
        "\n# orm integration tests\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\n\
         full_page_writes = off\nmax_connections = 200\n",
        path_str(&dir)?
    );
    let conf = data.join("postgresql.conf");
    let mut text =
        fs::read_to_string(&conf).map_err(|e| format!("cannot read {}: {e}", conf.display()))?;
    text.push_str(&settings);
    fs::write(&conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    let started = run(&mut pg_command(
        as_root,
        &pg_ctl,
        &[
            "-D",
            path_str(&data)?,
            "-l",
            path_str(&log)?,
            "-w",
            "-t",
            "60",
            "start",
        ],
    ));
    if let Err(e) = started {
        let log_text = fs::read_to_string(&log).unwrap_or_default();
        return Err(format!("{e}\nserver log:\n{log_text}"));
    }
    let url = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match probe(&url) {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "the cluster in {} started but {url} does not answer: {e}",
                    dir.display()
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let origin = format!(
        "throwaway cluster in {} ({})",
        dir.display(),
        initdb.display()
    );
    eprintln!("orm integration tests: started a {origin} at {url}");
    Ok(Server { url, origin })
}

/// `initdb` and `pg_ctl` of the newest `/usr/lib/postgresql/<version>/bin`, else from PATH.
fn find_binaries() -> Result<(PathBuf, PathBuf), String> {
    let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    let mut candidates: Vec<PathBuf> = dirs.into_iter().map(|(_, d)| d).collect();
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    for dir in &candidates {
        let (initdb, pg_ctl) = (dir.join("initdb"), dir.join("pg_ctl"));
        if initdb.is_file() && pg_ctl.is_file() {
            return Ok((initdb, pg_ctl));
        }
    }
    Err(
        "no `initdb` and `pg_ctl` found in /usr/lib/postgresql/*/bin, /usr/local/pgsql/bin or PATH"
            .into(),
    )
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata("/proc/self") {
        Ok(m) => m.uid() == 0,
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0"),
    }
}

/// A command running `program args` as the `postgres` OS user when `as_root`.
fn pg_command(as_root: bool, program: &Path, args: &[&str]) -> Command {
    if !as_root {
        let mut c = Command::new(program);
        c.args(args);
        return c;
    }
    if Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new("su");
        c.args([
            "postgres",
            "-s",
            "/bin/sh",
            "-c",
            &shell_line(program, args),
        ]);
        c
    }
}

fn shell_line(program: &Path, args: &[&str]) -> String {
    let mut line = quote(&program.to_string_lossy());
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

/// Runs a command to completion; its output becomes the error when it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let described = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {described}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{described} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A background shell that waits for this process to exit, then stops the cluster and deletes
/// its directory. It holds none of this process's output pipes.
fn spawn_watchdog(pg_ctl: &Path, data: &Path, dir: &Path, as_root: bool) -> Result<(), String> {
    let stop = shell_line(pg_ctl, &["-D", path_str(data)?, "stop", "-m", "immediate"]);
    let stop = if as_root {
        format!("su postgres -s /bin/sh -c {}", quote(&stop))
    } else {
        stop
    };
    let script = format!(
        "trap '' INT HUP; while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         if [ -f {pidfile} ]; then {stop} >/dev/null 2>&1; fi; rm -rf {dir}",
        pid = std::process::id(),
        pidfile = quote(path_str(&data.join("postmaster.pid"))?),
        dir = quote(path_str(dir)?),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the watchdog shell: {e}"))
}
