//! CLIENT TRACKING, CACHING, GETREDIR, TRACKINGINFO (`networking.c`): the client side
//! of client-side caching. The state and the messages are the keyspace's
//! ([`crate::keyspace::tracking`]); CLIENT dispatches its subcommands here.

use crate::command::Ctx;
use crate::error::{CmdError, CmdResult};
use crate::keyspace::tracking::TrackingOptions;
use crate::net::reply::Reply;
use crate::util::eq_ic;
use bytes::Bytes;

/// CLIENT TRACKING ON|OFF [REDIRECT id] [BCAST] [PREFIX p ...] [OPTIN] [OPTOUT]
/// [NOLOOP], with Redis's checks in Redis's order.
pub(crate) fn tracking(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut opts = TrackingOptions::default();
    let mut j = 3;
    while j < args.len() {
        let more = j + 1 < args.len();
        let a = &args[j];
        if eq_ic(a, "redirect") && more {
            j += 1;
            if opts.redirect != 0 {
                return Err(CmdError::err(
                    "A client can only redirect to a single other client",
                ));
            }
            let id = crate::util::parse_i64(&args[j]).ok_or(CmdError::NotInteger)?;
            if id <= 0 || !ctx.store.client_exists(id as u64) {
                return Err(CmdError::err(
                    "The client ID you want redirect to does not exist",
                ));
            }
            opts.redirect = id as u64;
        } else if eq_ic(a, "bcast") {
            opts.bcast = true;
        } else if eq_ic(a, "optin") {
            opts.optin = true;
        } else if eq_ic(a, "optout") {
            opts.optout = true;
        } else if eq_ic(a, "noloop") {
            opts.noloop = true;
        } else if eq_ic(a, "prefix") && more {
            j += 1;
            opts.prefixes.push(args[j].clone());
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let id = ctx.client.id;
    if eq_ic(&args[2], "off") {
        ctx.store.tracking.disable(id);
        return Ok(Reply::OK);
    }
    if !eq_ic(&args[2], "on") {
        return Err(CmdError::Syntax);
    }
    if !opts.bcast && !opts.prefixes.is_empty() {
        return Err(CmdError::err(
            "PREFIX option requires BCAST mode to be enabled",
        ));
    }
    let now = ctx.store.tracking.get(id).cloned();
    if let Some(st) = &now {
        if st.bcast != opts.bcast {
            return Err(CmdError::err("You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode."));
        }
    }
    if opts.bcast && (opts.optin || opts.optout) {
        return Err(CmdError::err(
            "OPTIN and OPTOUT are not compatible with BCAST",
        ));
    }
    if opts.optin && opts.optout {
        return Err(CmdError::err(
            "You can't specify both OPTIN mode and OPTOUT mode",
        ));
    }
    if let Some(st) = &now {
        if (opts.optin && st.optout) || (opts.optout && st.optin) {
            return Err(CmdError::err("You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode."));
        }
    }
    let mut quirk = None;
    if opts.bcast {
        quirk = ctx
            .store
            .tracking
            .check_prefixes(id, &opts.prefixes)
            .map_err(CmdError::Other)?;
    }
    ctx.store.tracking.enable(id, opts);
    Ok(match quirk {
        Some(e) => Reply::Many(vec![Reply::Error(e), Reply::OK]),
        None => Reply::OK,
    })
}

/// CLIENT CACHING YES|NO: whether the next command's keys are tracked, in OPTIN or
/// OPTOUT mode.
pub(crate) fn caching(ctx: &mut Ctx, arg: &[u8]) -> CmdResult {
    let id = ctx.client.id;
    let Some(st) = ctx.store.tracking.get(id) else {
        return Err(CmdError::err("CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"));
    };
    if eq_ic(arg, "yes") {
        if !st.optin {
            return Err(CmdError::err(
                "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            ));
        }
    } else if eq_ic(arg, "no") {
        if !st.optout {
            return Err(CmdError::err(
                "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            ));
        }
    } else {
        return Err(CmdError::Syntax);
    }
    ctx.store.tracking.set_caching(id);
    Ok(Reply::OK)
}

/// CLIENT GETREDIR: the redirect target, 0 for none, -1 when tracking is off.
pub(crate) fn getredir(ctx: &Ctx) -> Reply {
    Reply::Int(redirect_of(ctx, ctx.client.id))
}

/// The `redir=` of CLIENT LIST and GETREDIR's answer for client `id`.
pub(crate) fn redirect_of(ctx: &Ctx, id: u64) -> i64 {
    ctx.store
        .tracking
        .get(id)
        .map_or(-1, |st| st.redirect as i64)
}

/// CLIENT LIST's tracking flags for client `id`: `t` tracking, `R` broken
/// redirect, `B` broadcast.
pub(crate) fn list_flags(ctx: &Ctx, id: u64) -> &'static str {
    match ctx.store.tracking.get(id) {
        None => "",
        Some(st) => match (st.broken_redirect, st.bcast) {
            (false, false) => "t",
            (true, false) => "tR",
            (false, true) => "tB",
            (true, true) => "tRB",
        },
    }
}

/// CLIENT TRACKINGINFO: flags (a set), redirect, prefixes.
pub(crate) fn trackinginfo(ctx: &Ctx) -> Reply {
    let st = ctx.store.tracking.get(ctx.client.id);
    let mut flags = Vec::new();
    let mut prefixes = Vec::new();
    match st {
        None => flags.push("off"),
        Some(st) => {
            flags.push("on");
            if st.bcast {
                flags.push("bcast");
            }
            if st.optin {
                flags.push("optin");
                if st.caching {
                    flags.push("caching-yes");
                }
            }
            if st.optout {
                flags.push("optout");
                if st.caching {
                    flags.push("caching-no");
                }
            }
            if st.noloop {
                flags.push("noloop");
            }
            if st.broken_redirect {
                flags.push("broken_redirect");
            }
            prefixes = st.prefixes.iter().cloned().map(Reply::Bulk).collect();
        }
    }
    Reply::Map(vec![
        (
            Reply::text("flags"),
            Reply::Set(flags.into_iter().map(Reply::text).collect()),
        ),
        (
            Reply::text("redirect"),
            Reply::Int(st.map_or(-1, |s| s.redirect as i64)),
        ),
        (Reply::text("prefixes"), Reply::Array(prefixes)),
    ])
}
