//! CLIENT (`networking.c`): ID SETNAME GETNAME LIST INFO KILL UNBLOCK NO-EVICT
//! HELP; TRACKING CACHING GETREDIR TRACKINGINFO are client-side caching's
//! ([`super::tracking`]).

use super::subcommand::{help_reply, sub_arity, unknown_sub};
use crate::client::Client;
use crate::command::{CommandSpec, Ctx};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::util::eq_ic;
use bytes::Bytes;
use std::fmt::Write as _;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![CommandSpec::new("client", -2, 0, (0, 0, 0), client)]
}

/// Commands with subcommands: CLIENT LIST shows them as `container|sub`.
pub const CONTAINERS: &[&str] = &[
    "acl", "client", "cluster", "command", "config", "debug", "function", "latency", "memory",
    "module", "object", "pubsub", "script", "slowlog", "xinfo", "xgroup",
];

/// The `cmd=` of CLIENT LIST for a request: the lower-case name, with the subcommand
/// for containers.
pub fn cmd_label(args: &[Bytes]) -> String {
    let name = crate::util::lower(&args[0]);
    match args.get(1) {
        Some(sub) if CONTAINERS.contains(&name.as_str()) && name != "debug" => {
            format!("{name}|{}", crate::util::lower(sub))
        }
        _ => name,
    }
}

/// Sets `label` to `cmd_label(args)`, without allocating when the command repeats
/// (the connection calls it for every command). `spec` is the table row of `args[0]`:
/// its `LABEL_SUB` flag saves scanning `CONTAINERS` per command.
pub fn update_cmd_label(label: &mut String, args: &[Bytes], spec: Option<&CommandSpec>) {
    let container =
        args.len() > 1 && spec.is_some_and(|s| s.flags & crate::command::LABEL_SUB != 0);
    if !container && label.as_bytes().eq_ignore_ascii_case(&args[0]) {
        return;
    }
    *label = cmd_label(args);
}

const SUBS: &[(&str, i32)] = &[
    ("id", 2),
    ("setname", 3),
    ("getname", 2),
    ("list", -2),
    ("info", 2),
    ("kill", -3),
    ("unblock", -3),
    ("no-evict", 3),
    ("reply", 3),
    ("pause", -3),
    ("unpause", 2),
    ("getredir", 2),
    ("tracking", -3),
    ("caching", 3),
    ("trackinginfo", 2),
    ("help", 2),
];

fn client(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let Some(&(sub, arity)) = SUBS.iter().find(|(n, _)| eq_ic(&args[1], n)) else {
        return Err(unknown_sub("client", &args[1]));
    };
    sub_arity("client", sub, arity, args)?;
    match sub {
        "id" => Ok(Reply::Int(ctx.client.id as i64)),
        "setname" => setname(ctx, &args[2]),
        "getname" => Ok(Reply::opt_bulk(ctx.client.name.clone())),
        "list" => list(ctx, args),
        "info" => {
            let line = Row::of(ctx, ctx.client, true).line();
            Ok(Reply::Verbatim(Bytes::from(line)))
        }
        "kill" => kill(ctx, args),
        "unblock" => unblock(ctx, args),
        "no-evict" => {
            if eq_ic(&args[2], "on") {
                ctx.client.no_evict = true;
            } else if eq_ic(&args[2], "off") {
                ctx.client.no_evict = false;
            } else {
                return Err(CmdError::Syntax);
            }
            Ok(Reply::OK)
        }
        "getredir" => Ok(super::tracking::getredir(ctx)),
        "tracking" => super::tracking::tracking(ctx, args),
        "caching" => super::tracking::caching(ctx, &args[2]),
        "trackinginfo" => Ok(super::tracking::trackinginfo(ctx)),
        "reply" => reply_mode(ctx, &args[2]),
        "pause" => pause(ctx, args),
        "unpause" => {
            ctx.store.pause.unpause();
            ctx.store.sync_pause();
            Ok(Reply::OK)
        }
        _ => Ok(help_reply("client", HELP)),
    }
}

const HELP: &[&str] = &[
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
];

/// CLIENT REPLY ON|OFF|SKIP: the connection leaves out the replies
/// (`crate::net::connection`); ON answers OK, OFF and SKIP answer nothing.
fn reply_mode(ctx: &mut Ctx, mode: &Bytes) -> CmdResult {
    let c = &mut *ctx.client;
    if eq_ic(mode, "on") {
        c.reply_off = false;
        c.reply_skip = false;
        c.reply_skip_next = false;
        Ok(Reply::OK)
    } else if eq_ic(mode, "off") {
        c.reply_off = true;
        Ok(Reply::OK)
    } else if eq_ic(mode, "skip") {
        if !c.reply_off {
            c.reply_skip_next = true;
        }
        Ok(Reply::OK)
    } else {
        Err(CmdError::Syntax)
    }
}

/// CLIENT PAUSE timeout [WRITE|ALL] (`crate::pause`).
fn pause(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 4 {
        return Err(CmdError::err(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(&args[1])
        )));
    }
    let mut all = true;
    if let Some(mode) = args.get(3) {
        if eq_ic(mode, "write") {
            all = false;
        } else if !eq_ic(mode, "all") {
            return Err(CmdError::err("CLIENT PAUSE mode must be WRITE or ALL"));
        }
    }
    let ms = crate::util::parse_i64(&args[2])
        .ok_or_else(|| CmdError::err("timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(CmdError::err("timeout is negative"));
    }
    let now = ctx.now();
    let end = if ms > 0 {
        now.saturating_add(ms as u64)
    } else {
        0
    };
    ctx.store.pause.pause(end, all, now);
    ctx.store.sync_pause();
    Ok(Reply::OK)
}

fn setname(ctx: &mut Ctx, name: &Bytes) -> CmdResult {
    if name.iter().any(|&c| c <= b' ' || c > b'~') {
        return Err(CmdError::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    ctx.client.name = if name.is_empty() {
        None
    } else {
        Some(super::own(name))
    };
    Ok(Reply::OK)
}

/// The kinds CLIENT LIST/KILL TYPE select.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Replica,
    Master,
    PubSub,
}

fn parse_kind(b: &[u8]) -> Result<Kind, CmdError> {
    Ok(if eq_ic(b, "normal") {
        Kind::Normal
    } else if eq_ic(b, "replica") || eq_ic(b, "slave") {
        Kind::Replica
    } else if eq_ic(b, "master") {
        Kind::Master
    } else if eq_ic(b, "pubsub") {
        Kind::PubSub
    } else {
        return Err(CmdError::err(format!(
            "Unknown client type '{}'",
            String::from_utf8_lossy(b)
        )));
    })
}

/// One client as CLIENT LIST shows it, read from its record.
struct Row {
    id: u64,
    addr: String,
    laddr: String,
    name: String,
    age: u64,
    idle: u64,
    flags: String,
    db: usize,
    sub: usize,
    psub: usize,
    multi: i64,
    bufs: crate::client::BufStats,
    multi_mem: usize,
    tot_mem: usize,
    cmd: String,
    resp: u8,
    /// Client-side caching's redirect (`redir=`): -1 when tracking is off.
    redir: i64,
    /// Pushes waiting for the connection (`oll`) and pending output bytes (`omem`).
    oll: usize,
    omem: usize,
}

impl Row {
    /// The row of `c`; `caller` is the client running this command (never idle).
    fn of(ctx: &Ctx, c: &Client, caller: bool) -> Row {
        let blocked = !caller && ctx.store.blocking.is_blocked(c.id);
        Row {
            id: c.id,
            addr: c.addr.clone(),
            laddr: c.laddr.clone(),
            name: c
                .name
                .as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default(),
            age: c.created.elapsed().as_secs(),
            idle: if caller {
                0
            } else {
                c.last_active.elapsed().as_secs()
            },
            flags: if c.replica {
                "S".to_string()
            } else if c.master {
                "M".to_string()
            } else {
                flags_of(Flags {
                    multi: c.multi.is_some(),
                    pubsub: c.subscriptions() > 0,
                    blocked,
                    tracking: super::tracking::list_flags(ctx, c.id),
                    no_evict: c.no_evict,
                    monitor: c.monitor,
                })
            },
            db: c.db,
            sub: c.channels.len(),
            psub: c.patterns.len(),
            multi: c.multi.as_ref().map_or(-1, |q| q.len() as i64),
            bufs: c.bufs,
            multi_mem: c.multi_mem(),
            tot_mem: c.total_mem(),
            cmd: if c.last_cmd.is_empty() {
                "NULL".into()
            } else {
                c.last_cmd.clone()
            },
            resp: c.resp,
            redir: super::tracking::redirect_of(ctx, c.id),
            oll: c.output.as_ref().map_or(0, |o| o.oll()),
            omem: c.output.as_ref().map_or(0, |o| o.omem()),
        }
    }

    fn kind(&self) -> Kind {
        if self.flags == "S" {
            Kind::Replica
        } else if self.flags == "M" {
            Kind::Master
        } else if self.sub + self.psub > 0 {
            Kind::PubSub
        } else {
            Kind::Normal
        }
    }

    fn line(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub=0 multi={} qbuf={} qbuf-free={} argv-mem={} multi-mem={} rbs={} rbp={} obl={} oll={} omem={} tot-mem={} events=r cmd={} user=default redir={} resp={}",
            self.id,
            self.addr,
            self.laddr,
            self.id + 7,
            self.name,
            self.age,
            self.idle,
            self.flags,
            self.db,
            self.sub,
            self.psub,
            self.multi,
            self.bufs.qbuf,
            self.bufs.qbuf_free,
            self.bufs.argv_mem,
            self.multi_mem,
            self.bufs.rbs,
            self.bufs.rbp,
            self.bufs.obl,
            self.oll,
            self.omem,
            self.tot_mem + self.omem,
            self.cmd,
            self.redir,
            self.resp
        );
        s
    }
}

/// What CLIENT LIST's `flags` field shows of one client.
struct Flags<'a> {
    multi: bool,
    pubsub: bool,
    blocked: bool,
    tracking: &'a str,
    no_evict: bool,
    monitor: bool,
}

fn flags_of(
    Flags {
        multi,
        pubsub,
        blocked,
        tracking,
        no_evict,
        monitor,
    }: Flags<'_>,
) -> String {
    // Redis's order: O P x b t R B ... e.
    let mut f = String::new();
    if monitor {
        f.push('O');
    }
    if pubsub {
        f.push('P');
    }
    if multi {
        f.push('x');
    }
    if blocked {
        f.push('b');
    }
    f.push_str(tracking);
    if no_evict {
        f.push('e');
    }
    if f.is_empty() {
        f.push('N');
    }
    f
}

/// Every connected client, ordered by id: the registry's records plus the caller's,
/// which is checked out while its command runs. An in-process caller (id 0) is not
/// a connection and is not listed.
fn rows(ctx: &Ctx) -> Vec<Row> {
    let mut v: Vec<Row> = ctx
        .store
        .clients
        .iter()
        .map(|c| Row::of(ctx, c, false))
        .collect();
    if ctx.client.id != 0 {
        v.push(Row::of(ctx, ctx.client, true));
    }
    v.sort_by_key(|r| r.id);
    v
}

fn parse_id(b: &[u8]) -> Option<u64> {
    crate::util::parse_i64(b)
        .filter(|&n| n > 0)
        .map(|n| n as u64)
}

fn list(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut kind = None;
    let mut ids: Option<Vec<u64>> = None;
    if args.len() == 4 && eq_ic(&args[2], "type") {
        kind = Some(parse_kind(&args[3])?);
    } else if args.len() >= 4 && eq_ic(&args[2], "id") {
        let mut v = Vec::new();
        for a in &args[3..] {
            // Zero and negative ids parse (and match nothing); only non-numbers fail.
            let id = crate::util::parse_i64(a).ok_or_else(|| CmdError::err("Invalid client ID"))?;
            v.push(id.max(0) as u64);
        }
        ids = Some(v);
    } else if args.len() != 2 {
        return Err(CmdError::Syntax);
    }
    let mut out = String::new();
    for r in rows(ctx) {
        if kind.is_some_and(|k| r.kind() != k) {
            continue;
        }
        if ids.as_ref().is_some_and(|v| !v.contains(&r.id)) {
            continue;
        }
        out.push_str(&r.line());
    }
    Ok(Reply::Verbatim(Bytes::from(out)))
}

fn kill(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let me = ctx.client.id;
    if args.len() == 3 {
        // Old form: CLIENT KILL addr, which may kill the caller too.
        let addr = String::from_utf8_lossy(&args[2]).into_owned();
        let target = rows(ctx).into_iter().find(|r| r.addr == addr).map(|r| r.id);
        let Some(id) = target else {
            return Err(CmdError::err("No such client"));
        };
        kill_one(ctx, id);
        return Ok(Reply::OK);
    }
    if !args.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let mut id = None;
    let mut kind = None;
    let mut addr = None;
    let mut laddr = None;
    let mut skipme = true;
    for p in args[2..].chunks(2) {
        let (opt, val) = (&p[0], &p[1]);
        if eq_ic(opt, "id") {
            id = Some(
                parse_id(val).ok_or_else(|| CmdError::err("client-id should be greater than 0"))?,
            );
        } else if eq_ic(opt, "type") {
            kind = Some(parse_kind(val)?);
        } else if eq_ic(opt, "addr") {
            addr = Some(String::from_utf8_lossy(val).into_owned());
        } else if eq_ic(opt, "laddr") {
            laddr = Some(String::from_utf8_lossy(val).into_owned());
        } else if eq_ic(opt, "user") {
            if val.as_ref() != b"default" {
                return Err(CmdError::err(format!(
                    "No such user '{}'",
                    String::from_utf8_lossy(val)
                )));
            }
        } else if eq_ic(opt, "skipme") {
            if eq_ic(val, "yes") {
                skipme = true;
            } else if eq_ic(val, "no") {
                skipme = false;
            } else {
                return Err(CmdError::Syntax);
            }
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let victims: Vec<u64> = rows(ctx)
        .into_iter()
        .filter(|r| {
            id.is_none_or(|i| r.id == i)
                && kind.is_none_or(|k| r.kind() == k)
                && addr.as_ref().is_none_or(|a| r.addr == *a)
                && laddr.as_ref().is_none_or(|a| r.laddr == *a)
                && !(skipme && r.id == me)
        })
        .map(|r| r.id)
        .collect();
    for &v in &victims {
        kill_one(ctx, v);
    }
    Ok(Reply::Int(victims.len() as i64))
}

/// Closes a connection: the caller after its reply, any other one at once.
fn kill_one(ctx: &mut Ctx, id: u64) {
    if id == ctx.client.id {
        ctx.client.close_after_reply = true;
        return;
    }
    // The connection cleans up when it wakes; the mark keeps the client out of
    // CLIENT LIST and a second KILL from counting it again.
    ctx.store.clients.kill(id);
}

fn unblock(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let id = super::int_arg(&args[2])?;
    let error = match args.len() {
        3 => false,
        4 if eq_ic(&args[3], "timeout") => false,
        4 if eq_ic(&args[3], "error") => true,
        4 => {
            return Err(CmdError::err(
                "CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            ))
        }
        _ => return Err(CmdError::Syntax),
    };
    if id <= 0 {
        return Ok(Reply::Int(0));
    }
    match ctx.store.blocking.unblock(id as u64) {
        None => Ok(Reply::Int(0)),
        Some(b) => {
            const UNBLOCKED: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";
            let e = error.then_some(UNBLOCKED);
            crate::observe::unblocked(ctx.store, &b.args, e);
            if error {
                let _ = b.tx.send(Reply::error(UNBLOCKED));
            }
            // Dropping the sender makes the waiting connection reply its timeout reply.
            Ok(Reply::Int(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_containers_with_their_subcommand() {
        let a =
            |v: &[&str]| -> Vec<Bytes> { v.iter().map(|s| Bytes::from(s.to_string())).collect() };
        assert_eq!(cmd_label(&a(&["CLIENT", "List"])), "client|list");
        assert_eq!(cmd_label(&a(&["GET", "k"])), "get");
        assert_eq!(cmd_label(&a(&["config"])), "config");
    }

    #[test]
    fn update_label_notices_a_container_after_the_bare_name() {
        let a =
            |v: &[&str]| -> Vec<Bytes> { v.iter().map(|s| Bytes::from(s.to_string())).collect() };
        let spec = |n: &str| crate::command::lookup(n.as_bytes());
        let mut label = String::from("config");
        update_cmd_label(&mut label, &a(&["CONFIG", "GET", "x"]), spec("config"));
        assert_eq!(label, "config|get");
        update_cmd_label(&mut label, &a(&["SET", "k", "v"]), spec("set"));
        assert_eq!(label, "set");
        update_cmd_label(&mut label, &a(&["Set", "k", "v"]), spec("set"));
        assert_eq!(label, "set");
        update_cmd_label(&mut label, &a(&["DEBUG", "sleep", "0"]), spec("debug"));
        assert_eq!(label, "debug");
        update_cmd_label(&mut label, &a(&["NOPE", "x"]), None);
        assert_eq!(label, "nope");
    }
}
