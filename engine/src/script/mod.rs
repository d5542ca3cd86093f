//! Lua scripting, as Redis 7.0's `eval.c`, `script.c`, `script_lua.c` and
//! `function_lua.c`: EVAL scripts and FUNCTION libraries run on Lua 5.1.
//!
//! - `lua`: the VM, its sandbox and the `redis` API; one run of a script
//!   ([`lua::Vm::run`]) with its `redis.call` going through the dispatcher's
//!   [`crate::command::call`], so every write path consumer sees the script's
//!   commands (notifications, leases, WATCH, propagation as one MULTI/EXEC unit);
//! - `convert`: the reply conversions between Lua values and RESP2/RESP3;
//! - `libs`: `cjson`, `cmsgpack`, `bit` and `struct`, written in Rust;
//! - `functions`: FUNCTION libraries, their registry and DUMP/RESTORE payloads.
//!
//! A running script holds the store's lock. [`RunState`] is shared with the
//! connections outside the lock: past `busy-reply-threshold` they answer `-BUSY`
//! without waiting for the lock, and SCRIPT KILL / FUNCTION KILL / SHUTDOWN NOSAVE
//! raise a flag the VM's instruction hook checks.

pub(crate) mod convert;
pub(crate) mod functions;
pub(crate) mod libs;
pub(crate) mod lua;

use crate::net::reply::Reply;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Script flags (Redis's `SCRIPT_FLAG_*`), from a `#!lua flags=...` shebang or a
/// function's registration.
pub(crate) mod flags {
    /// `no-writes`: the script may not call write commands.
    pub const NO_WRITES: u32 = 1 << 0;
    /// `allow-oom`: runs and writes even when over `maxmemory`.
    pub const ALLOW_OOM: u32 = 1 << 1;
    /// `allow-stale`: may run on a stale replica.
    pub const ALLOW_STALE: u32 = 1 << 2;
    /// `no-cluster`: refused in cluster mode.
    pub const NO_CLUSTER: u32 = 1 << 3;
    /// `allow-cross-slot-keys`.
    pub const ALLOW_CROSS_SLOT: u32 = 1 << 4;
    /// The script had a shebang (flags apply; without one Redis keeps its old rules).
    pub const EVAL_COMPAT_MODE: u32 = 1 << 5;

    /// Flag names as shebangs and FUNCTION LIST spell them.
    pub const NAMES: &[(u32, &str)] = &[
        (NO_WRITES, "no-writes"),
        (ALLOW_OOM, "allow-oom"),
        (ALLOW_STALE, "allow-stale"),
        (NO_CLUSTER, "no-cluster"),
        (ALLOW_CROSS_SLOT, "allow-cross-slot-keys"),
    ];

    /// Parses one flag name.
    pub fn parse(name: &[u8]) -> Option<u32> {
        NAMES
            .iter()
            .find(|(_, n)| n.as_bytes() == name)
            .map(|(f, _)| *f)
    }
}

/// A cached EVAL script.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    /// The body as sent.
    pub(crate) body: Bytes,
}

/// The store's scripting state.
#[derive(Debug)]
pub(crate) struct Scripting {
    /// The EVAL VM, made on first use and dropped by SCRIPT FLUSH.
    pub(crate) eval_vm: Option<lua::Vm>,
    /// Scripts by lower-case SHA-1 (SCRIPT LOAD, EVAL).
    pub(crate) scripts: HashMap<String, Script>,
    /// FUNCTION libraries and their VM.
    pub(crate) functions: functions::Functions,
    /// What connections see of a running script without the lock.
    pub(crate) run: Arc<RunState>,
}

impl Default for Scripting {
    fn default() -> Self {
        Scripting {
            eval_vm: None,
            scripts: HashMap::new(),
            functions: functions::Functions::default(),
            run: Arc::new(RunState::default()),
        }
    }
}

/// The hex SHA-1 of `body`, lower case (EVALSHA's name of a script).
pub(crate) fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

/// Parses a `#!lua` shebang line (Redis's `evalExtractShebangFlags`). Returns the
/// flags and the length of the shebang line (its newline excluded: Redis compiles the
/// rest with the newline kept, so line numbers stay the user's), or the error text.
pub(crate) fn parse_shebang(body: &[u8]) -> Result<Option<(u32, usize)>, String> {
    if !body.starts_with(b"#!") {
        return Ok(None);
    }
    let len = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
    let line = &body[..len];
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or(b"");
    if engine != b"#!lua" {
        return Err(format!(
            "ERR Unexpected engine in script shebang: {}",
            String::from_utf8_lossy(engine)
        ));
    }
    let mut f = 0;
    for part in parts {
        let Some(list) = part.strip_prefix(b"flags=") else {
            return Err(format!(
                "ERR Unknown lua shebang option: {}",
                String::from_utf8_lossy(part)
            ));
        };
        for name in list.split(|&b| b == b',').filter(|n| !n.is_empty()) {
            match flags::parse(name) {
                Some(x) => f |= x,
                None => {
                    return Err(format!(
                        "ERR Unexpected flag in script shebang: {}",
                        String::from_utf8_lossy(name)
                    ))
                }
            }
        }
    }
    Ok(Some((f, len)))
}

/// The running script as FUNCTION STATS shows it: its name, the command that called
/// it, and the milliseconds it has run.
pub(crate) type Running = (String, Vec<Bytes>, u64);

/// Gives the runtime back the worker thread a slow script occupies, so that the
/// other connections get their BUSY replies and SCRIPT KILL / SHUTDOWN NOSAVE get
/// through.
///
/// A script runs synchronously inside its connection's task. Tokio does not notice a
/// worker that blocks: when the worker that last polled the I/O driver picked up
/// the script's request alone, no other worker is woken (they sleep until a task is
/// scheduled for them), so nobody polls the driver and no connection is served until
/// the script ends. `block_in_place` hands this worker's core (its queue, and the
/// driver duty) to another thread; the closure waits until a task spawned from it
/// has run somewhere else, so that the hand-off really happened (with one worker,
/// only the thread that took the core can run it) instead of being undone when the
/// closure returns. Outside a multi-thread runtime (in-process callers, unit tests)
/// there is no worker to give back.
fn release_worker() {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return;
    }
    tokio::task::block_in_place(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // Spawned without this thread's core: it goes to the shared queue and wakes a
        // sleeping worker (or the thread that took the core).
        handle.spawn(async move {
            let _ = tx.send(());
        });
        // Bounded: a runtime shutting down never runs it.
        let _ = rx.recv_timeout(std::time::Duration::from_millis(200));
    });
}

/// The error of a script's call of a command scripts may not call.
pub(crate) const NOT_FROM_SCRIPT: &str = "ERR This Redis command is not allowed from script";

/// Whether a script may call this command, as Redis's `scriptCall` decides on the
/// command `lookupCommand` finds: for a container (CLIENT, CONFIG, SCRIPT, ...) that
/// is the subcommand, with its own `noscript` flag (CLIENT LIST is refused, CLIENT
/// HELP is not), and an unknown subcommand is an unknown command. Other commands go
/// by their table row. `Err` holds the error reply's text.
pub(crate) fn allowed_in_script(
    spec: &crate::command::CommandSpec,
    argv: &[Bytes],
) -> Result<(), &'static str> {
    use crate::command::{LABEL_SUB, NOSCRIPT};
    if spec.flags & LABEL_SUB != 0 && argv.len() > 1 {
        let full = format!("{}|{}", spec.name, crate::util::lower(&argv[1]));
        if !crate::cmd::command_meta::has_subcommand(&full) {
            return Err("ERR Unknown Redis command called from script");
        }
        let sub = crate::cmd::command_meta::flags(&full);
        let argc = argv.len() as i64;
        if (sub.arity > 0 && argc != sub.arity) || argc < -sub.arity {
            return Err("ERR Wrong number of args calling Redis command from script");
        }
        if sub.noscript {
            return Err(NOT_FROM_SCRIPT);
        }
        return Ok(());
    }
    if spec.flags & NOSCRIPT != 0 {
        return Err(NOT_FROM_SCRIPT);
    }
    Ok(())
}

/// A running script's state as seen from outside the store's lock.
#[derive(Debug, Default)]
pub struct RunState {
    running: AtomicBool,
    started_us: AtomicU64,
    busy: AtomicBool,
    kill: AtomicBool,
    /// The kill came from SHUTDOWN NOSAVE: the script's client gets no reply.
    shutdown: AtomicBool,
    wrote: AtomicBool,
    function: AtomicBool,
    threshold_ms: AtomicU64,
    /// The running script's name and the command that called it (FUNCTION STATS).
    current: std::sync::Mutex<(String, Vec<Bytes>)>,
    /// Library and function counts (FUNCTION STATS while a script is busy).
    counts: AtomicU64,
}

/// Redis's `shared.slowevalerr`.
pub(crate) const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
/// Redis's `shared.slowscripterr`.
pub(crate) const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
/// The error a killed script or function ends with.
pub(crate) const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";

impl RunState {
    /// A script starts.
    pub(crate) fn begin(&self, function: bool, threshold_ms: u64) {
        self.started_us
            .store(crate::util::now_us(), Ordering::Relaxed);
        self.threshold_ms.store(threshold_ms, Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
        self.kill.store(false, Ordering::Relaxed);
        self.shutdown.store(false, Ordering::Relaxed);
        self.wrote.store(false, Ordering::Relaxed);
        self.function.store(function, Ordering::Relaxed);
        self.running.store(true, Ordering::Release);
    }

    /// Names the script about to run and the command that called it, and records
    /// the registry's counts, for FUNCTION STATS during a busy script.
    pub(crate) fn set_current(&self, name: &str, argv: &[Bytes], counts: (usize, usize)) {
        if let Ok(mut c) = self.current.lock() {
            *c = (name.to_string(), argv.to_vec());
        }
        self.set_counts(counts);
    }

    /// Records the registry's library and function counts.
    pub(crate) fn set_counts(&self, (libraries, functions): (usize, usize)) {
        self.counts.store(
            ((libraries as u64) << 32) | (functions as u64 & 0xFFFF_FFFF),
            Ordering::Relaxed,
        );
    }

    /// What FUNCTION STATS says while a script is busy: the running function (name,
    /// calling command, milliseconds) and the counts; during an EVAL script, Redis's
    /// BUSY error for scripts (`functionStatsCommand`).
    pub(crate) fn stats(&self) -> Result<(Option<Running>, (usize, usize)), &'static str> {
        let c = self.counts.load(Ordering::Relaxed);
        let counts = ((c >> 32) as usize, (c & 0xFFFF_FFFF) as usize);
        if !self.running() {
            return Ok((None, counts));
        }
        if !self.function.load(Ordering::Relaxed) {
            return Err(BUSY_EVAL);
        }
        let (name, argv) = self.current.lock().map(|c| c.clone()).unwrap_or_default();
        Ok((Some((name, argv, self.elapsed_us() / 1000)), counts))
    }

    /// The script ended.
    pub(crate) fn end(&self) {
        self.running.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        self.kill.store(false, Ordering::Relaxed);
    }

    /// Whether a script is running now.
    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Whether a script has run past `busy-reply-threshold`: other clients get BUSY.
    pub(crate) fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Microseconds the current script has run.
    pub(crate) fn elapsed_us(&self) -> u64 {
        crate::util::now_us().saturating_sub(self.started_us.load(Ordering::Relaxed))
    }

    /// The script called a write command (SCRIPT KILL then refuses).
    pub(crate) fn wrote(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }

    /// Whether a kill was requested.
    pub(crate) fn killed(&self) -> bool {
        self.kill.load(Ordering::Acquire)
    }

    /// Called by the VM's hook: turns on BUSY past the threshold.
    pub(crate) fn tick(&self) {
        if !self.busy.load(Ordering::Relaxed) {
            let limit = self.threshold_ms.load(Ordering::Relaxed);
            if limit > 0 && self.elapsed_us() >= limit * 1000 {
                tracing::warn!(
                    "Slow script detected: still in execution after {limit} milliseconds"
                );
                self.busy.store(true, Ordering::Release);
                release_worker();
            }
        }
    }

    /// The BUSY error for the running script's kind.
    pub(crate) fn busy_error(&self) -> &'static str {
        if self.function.load(Ordering::Relaxed) {
            BUSY_FUNCTION
        } else {
            BUSY_EVAL
        }
    }

    /// SCRIPT KILL (`eval`) or FUNCTION KILL, as Redis's `scriptKill`.
    pub(crate) fn kill(&self, eval: bool) -> Reply {
        if !self.running() {
            return Reply::error("NOTBUSY No scripts in execution right now.");
        }
        if self.wrote.load(Ordering::Relaxed) {
            return Reply::error("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.");
        }
        let function = self.function.load(Ordering::Relaxed);
        if eval && function {
            return Reply::error(BUSY_FUNCTION);
        }
        if !eval && !function {
            return Reply::error(BUSY_EVAL);
        }
        self.kill.store(true, Ordering::Release);
        Reply::OK
    }

    /// SHUTDOWN NOSAVE during a script: stops it whatever it wrote.
    pub(crate) fn force_kill(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.kill.store(true, Ordering::Release);
    }

    /// Whether SHUTDOWN NOSAVE stopped the script that just ran.
    pub(crate) fn shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command row Redis also has carries Redis 7.0's `noscript` flag (the
    /// containers go by their subcommands' flags instead).
    /// Every row that names a first key carries `MOVABLE_KEYS` exactly when Redis
    /// 7.0 says `movablekeys` (client-side caching trusts the bit on its hot path).
    #[test]
    fn movable_key_rows_match_redis() {
        use crate::command::MOVABLE_KEYS;
        let mut wrong = Vec::new();
        for spec in crate::command::table().values() {
            if spec.first_key <= 0 || crate::cmd::command_meta::info(spec.name).is_none() {
                continue;
            }
            let redis = crate::cmd::command_meta::flags(spec.name).movablekeys;
            if redis != (spec.flags & MOVABLE_KEYS != 0) {
                wrong.push((spec.name, redis));
            }
        }
        wrong.sort();
        assert!(
            wrong.is_empty(),
            "(command, redis's movablekeys): {wrong:?}"
        );
    }

    #[test]
    fn noscript_rows_match_redis() {
        use crate::command::{LABEL_SUB, NOSCRIPT};
        let mut wrong = Vec::new();
        for spec in crate::command::table().values() {
            if spec.flags & LABEL_SUB != 0 || crate::cmd::command_meta::info(spec.name).is_none() {
                continue;
            }
            let redis = crate::cmd::command_meta::flags(spec.name).noscript;
            if redis != (spec.flags & NOSCRIPT != 0) {
                wrong.push((spec.name, redis));
            }
        }
        wrong.sort();
        assert!(wrong.is_empty(), "(command, redis's noscript): {wrong:?}");
    }

    #[test]
    fn shebangs() {
        assert_eq!(parse_shebang(b"return 1"), Ok(None));
        assert_eq!(parse_shebang(b"#!lua\nreturn 1"), Ok(Some((0, 5))));
        assert_eq!(
            parse_shebang(b"#!lua flags=no-writes,allow-oom\nx"),
            Ok(Some((flags::NO_WRITES | flags::ALLOW_OOM, 31)))
        );
        assert_eq!(
            parse_shebang(b"#!lua flags=bad\n").unwrap_err(),
            "ERR Unexpected flag in script shebang: bad"
        );
        assert_eq!(
            parse_shebang(b"#!luax\n").unwrap_err(),
            "ERR Unexpected engine in script shebang: #!luax"
        );
        assert_eq!(
            parse_shebang(b"#!lua name=x\n").unwrap_err(),
            "ERR Unknown lua shebang option: name=x"
        );
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
