//! Test support: a private redis-server, an in-process engine, and a raw RESP client.
#![allow(dead_code)]

pub mod dataset;

#[allow(unused_imports)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A private redis-server on its own port and directory, stopped by PID on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` with no persistence. Panics with a clear message if the
    /// binary is missing (CI installs it with apt-get).
    pub fn start(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("coherent-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let s = RedisServer { port, child, dir };
        wait_port(port);
        s
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the server's process.
    #[allow(dead_code)] // not every test binary freezes a server
    pub fn signal(&self, signal: &str) {
        let st = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{signal} failed");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until something accepts connections on the port.
pub fn wait_port(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

/// The engine running on a background runtime, on a free port.
pub struct EngineServer {
    pub addr: SocketAddr,
    pub engine: engine::Engine,
    _rt: tokio::runtime::Runtime,
}

impl EngineServer {
    pub fn start() -> EngineServer {
        // No save points, as the redis-server it is compared with (`--save ""`), and
        // DEBUG from loopback (`--enable-debug-command local`).
        Self::start_with(engine::EngineConfig {
            listen: "127.0.0.1:0".into(),
            save: String::new(),
            // As the private redis-servers run: DEBUG from loopback only.
            enable_debug_command: "local".into(),
            ..Default::default()
        })
    }

    pub fn start_with(cfg: engine::EngineConfig) -> EngineServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(engine::Server::bind(cfg)).expect("bind");
        let addr = server.local_addr().expect("addr");
        let engine = server.engine();
        rt.spawn(server.run(std::future::pending()));
        EngineServer {
            addr,
            engine,
            _rt: rt,
        }
    }
}

/// A parsed RESP reply (2 or 3), kept with enough structure to sort unordered replies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
    Null,
    Double(String),
    Bool(bool),
    Map(Vec<(Resp, Resp)>),
    Set(Vec<Resp>),
    Push(Vec<Resp>),
    Verbatim(Vec<u8>),
    BigNum(String),
}

impl Resp {
    /// Sorts array/set elements (recursively one level) for replies Redis leaves unordered.
    pub fn sorted(mut self) -> Resp {
        match &mut self {
            // A SCAN-family reply [cursor, [elements]]: sort the elements.
            Resp::Array(Some(v))
                if v.len() == 2
                    && matches!(v[0], Resp::Bulk(Some(_)))
                    && matches!(v[1], Resp::Array(Some(_))) =>
            {
                if let Resp::Array(Some(inner)) = &mut v[1] {
                    inner.sort();
                }
            }
            Resp::Array(Some(v)) | Resp::Set(v) | Resp::Push(v) => v.sort(),
            Resp::Map(m) => m.sort(),
            _ => {}
        }
        self
    }

    /// Sorts pairs of a flat [k, v, k, v] array (HGETALL in RESP2).
    pub fn sorted_pairs(self) -> Resp {
        match self {
            Resp::Array(Some(v)) => {
                let mut pairs: Vec<(Resp, Resp)> = v
                    .chunks(2)
                    .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or(Resp::Null)))
                    .collect();
                pairs.sort();
                Resp::Array(Some(pairs.into_iter().flat_map(|(a, b)| [a, b]).collect()))
            }
            other => other.sorted(),
        }
    }
}

/// A blocking raw RESP connection.
pub struct Conn {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let wr = s.try_clone().expect("clone");
        Conn {
            rd: BufReader::new(s),
            wr,
        }
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, b: &[u8]) {
        self.wr.write_all(b).expect("write");
    }

    /// Sends a command as a multibulk request.
    pub fn send(&mut self, args: &[&[u8]]) {
        let mut b = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            b.extend_from_slice(a);
            b.extend_from_slice(b"\r\n");
        }
        self.send_raw(&b);
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Resp {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.send(&a);
        self.read()
    }

    /// Reads one reply.
    pub fn read(&mut self) -> Resp {
        read_reply(&mut self.rd).expect("read reply")
    }

    /// Reads one reply, or `None` if the connection closed or timed out.
    pub fn try_read(&mut self) -> Option<Resp> {
        read_reply(&mut self.rd).ok()
    }

    /// The socket, for writes that may fail (the server closed it).
    pub fn raw_stream(&mut self) -> &mut TcpStream {
        &mut self.wr
    }

    pub fn set_timeout(&mut self, d: Duration) {
        self.rd.get_ref().set_read_timeout(Some(d)).ok();
    }
}

fn line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut s = Vec::new();
    r.read_until(b'\n', &mut s)?;
    if s.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    if s.ends_with(b"\r\n") {
        s.truncate(s.len() - 2);
    }
    Ok(String::from_utf8_lossy(&s).into_owned())
}

fn blob(r: &mut impl BufRead, n: usize) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; n + 2];
    r.read_exact(&mut b)?;
    b.truncate(n);
    Ok(b)
}

pub fn read_reply(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let l = line(r)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad reply");
    let (t, rest) = l.split_at(1);
    let num = || rest.parse::<i64>().map_err(|_| bad());
    Ok(match t {
        "+" => Resp::Simple(rest.into()),
        "-" => Resp::Error(rest.into()),
        ":" => Resp::Int(num()?),
        "$" => {
            let n = num()?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                Resp::Bulk(Some(blob(r, n as usize)?))
            }
        }
        "*" => {
            let n = num()?;
            if n < 0 {
                Resp::Array(None)
            } else {
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(read_reply(r)?);
                }
                Resp::Array(Some(v))
            }
        }
        "_" => Resp::Null,
        "," => Resp::Double(rest.into()),
        "#" => Resp::Bool(rest == "t"),
        "(" => Resp::BigNum(rest.into()),
        "=" => Resp::Verbatim(blob(r, num()? as usize)?),
        "%" => {
            let mut m = Vec::new();
            for _ in 0..num()? {
                let k = read_reply(r)?;
                let v = read_reply(r)?;
                m.push((k, v));
            }
            Resp::Map(m)
        }
        "~" | ">" => {
            let mut v = Vec::new();
            for _ in 0..num()? {
                v.push(read_reply(r)?);
            }
            if t == "~" {
                Resp::Set(v)
            } else {
                Resp::Push(v)
            }
        }
        _ => return Err(bad()),
    })
}

/// Runs the redis-py script `tests/clients/<script>` against `port` with `extra`
/// arguments; fails the test with the script's output unless it exits 0 and prints
/// `ok_line`.
pub fn run_redis_py(script: &str, port: u16, extra: &[&str], ok_line: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out = Command::new("python3")
        .arg(path)
        .arg("--port")
        .arg(port.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("python3 must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{script} failed (exit {:?}); run scripts/install-deps.sh if redis-py is missing:\n{text}",
        out.status.code()
    );
    assert!(text.contains(ok_line), "{text}");
}
