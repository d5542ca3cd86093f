//! The command stream as effects, for the AOF and replicas: Redis's `alsoPropagate`.
//!
//! A command that changed the keyspace is propagated as it was called, unless its
//! handler says otherwise: commands whose arguments are relative or random replace
//! them (`propagate_as`: EXPIRE as PEXPIREAT, SET EX as SET PXAT, SPOP as SREM,
//! INCRBYFLOAT as SET KEEPTTL, a served BLPOP as LPOP), add commands (`also`) or
//! propagate nothing of their own (`prevent`). Keys that expire are propagated as DEL,
//! ahead of the unit that found them expired. Effects the engine derives from a write
//! (a TTL backstop's cap) follow the command (`after`).
//!
//! What one execution unit (a command, EXEC, an in-process call, an expiry pass)
//! produced is handed to every [`PropagationSink`] at the unit's end, wrapped in
//! MULTI ... EXEC when it is more than one command. With no sink registered nothing is
//! recorded and nothing allocated: handlers check [`Propagation::is_on`] before they
//! build a replacement.

use bytes::Bytes;
use std::sync::Arc;

/// One command of the stream: `argv` run in database `db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagated {
    /// The database the command runs in (a sink writes SELECT when it changes).
    pub db: usize,
    /// The command and its arguments.
    pub argv: Vec<Bytes>,
}

/// Receives the stream (the AOF writer, the replication backlog). Called with the
/// store's lock held, after each execution unit: it should only buffer.
pub trait PropagationSink: Send + Sync + std::fmt::Debug {
    /// The commands one execution unit changed the keyspace with, in order.
    fn propagate(&self, ops: &[Propagated]);
}

/// How the command being run propagates itself.
#[derive(Debug, Default)]
pub(crate) enum Own {
    /// As called.
    #[default]
    AsCalled,
    /// As this command instead.
    Replaced(Vec<Bytes>),
    /// Not at all (it propagated its effects through `also`, or nothing).
    Prevented,
}

/// The stream being built.
#[derive(Debug, Default)]
pub(crate) struct Propagation {
    sinks: Vec<Arc<dyn PropagationSink>>,
    /// DELs of keys that expired, sent ahead of the unit.
    expired: Vec<Propagated>,
    /// The current unit's commands.
    unit: Vec<Propagated>,
    /// Effects derived from the current command, sent after it.
    after: Vec<Propagated>,
    /// How the current command propagates itself.
    own: Own,
}

fn argv(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

impl Propagation {
    /// Whether anything consumes the stream.
    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Adds a consumer of the stream.
    pub(crate) fn add_sink(&mut self, sink: Arc<dyn PropagationSink>) {
        self.sinks.push(sink);
    }

    /// Removes a consumer (the AOF turned off).
    pub(crate) fn remove_sink(&mut self, sink: &Arc<dyn PropagationSink>) {
        self.sinks.retain(|s| !Arc::ptr_eq(s, sink));
    }

    /// Starts a command (nested in EXEC or not); returns the enclosing command's state,
    /// to hand back to `end_command`.
    pub(crate) fn begin_command(&mut self) -> Own {
        std::mem::take(&mut self.own)
    }

    /// Ends a command that ran in `db` as `args`: propagates it (as its handler
    /// decided) if it changed the keyspace, then what it derived.
    pub(crate) fn end_command(&mut self, db: usize, args: &[Bytes], changed: bool, outer: Own) {
        let own = std::mem::replace(&mut self.own, outer);
        if changed && self.is_on() {
            match own {
                Own::AsCalled => self.unit.push(Propagated {
                    db,
                    argv: args.to_vec(),
                }),
                Own::Replaced(argv) => self.unit.push(Propagated { db, argv }),
                Own::Prevented => {}
            }
        }
        self.unit.append(&mut self.after);
    }

    /// The command propagates as `argv` instead (Redis's `rewriteClientCommandVector`).
    pub(crate) fn replace(&mut self, argv: Vec<Bytes>) {
        self.own = Own::Replaced(argv);
    }

    /// The command propagates nothing of its own (`preventCommandPropagation`).
    pub(crate) fn prevent(&mut self) {
        self.own = Own::Prevented;
    }

    /// Adds a command to the unit, before the current command's own (`alsoPropagate`).
    pub(crate) fn also(&mut self, db: usize, argv: Vec<Bytes>) {
        if self.is_on() {
            self.unit.push(Propagated { db, argv });
        }
    }

    /// How many commands the current unit holds (a script's mark before a command).
    pub(crate) fn unit_len(&self) -> usize {
        self.unit.len()
    }

    /// Drops the unit's commands after `mark` (`redis.set_repl(redis.REPL_NONE)`).
    pub(crate) fn truncate_unit(&mut self, mark: usize) {
        self.unit.truncate(mark);
    }

    /// Adds an effect derived from the current command, after it.
    pub(crate) fn after(&mut self, db: usize, argv: Vec<Bytes>) {
        if self.is_on() {
            self.after.push(Propagated { db, argv });
        }
    }

    /// `key` expired in `db`: a DEL goes out ahead of the current unit.
    pub(crate) fn expired(&mut self, db: usize, key: &[u8]) {
        if self.is_on() {
            self.expired.push(Propagated {
                db,
                argv: argv(&[b"DEL", key]),
            });
        }
    }

    /// `key` was evicted from `db`: a DEL (UNLINK when `lazy`, as Redis's
    /// `propagateDeletion`) goes out ahead of the current unit.
    pub(crate) fn deleted(&mut self, db: usize, key: &[u8], lazy: bool) {
        if self.is_on() {
            let cmd: &[u8] = if lazy { b"UNLINK" } else { b"DEL" };
            self.expired.push(Propagated {
                db,
                argv: argv(&[cmd, key]),
            });
        }
    }

    /// Ends an execution unit: hands what it produced to the sinks.
    #[inline]
    pub(crate) fn flush(&mut self) {
        if !self.expired.is_empty() || !self.unit.is_empty() {
            self.send();
        }
    }

    #[inline(never)]
    fn send(&mut self) {
        let mut ops = std::mem::take(&mut self.expired);
        if self.unit.len() > 1 {
            // MULTI and EXEC in the databases of the commands next to them, so that a
            // sink writing SELECT on a change of database never puts one between.
            let (first, last) = (self.unit[0].db, self.unit[self.unit.len() - 1].db);
            ops.push(Propagated {
                db: first,
                argv: argv(&[b"MULTI"]),
            });
            ops.append(&mut self.unit);
            ops.push(Propagated {
                db: last,
                argv: argv(&[b"EXEC"]),
            });
        } else {
            ops.append(&mut self.unit);
        }
        for sink in &self.sinks {
            sink.propagate(&ops);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Sink(Mutex<Vec<Vec<Propagated>>>);

    impl PropagationSink for Sink {
        fn propagate(&self, ops: &[Propagated]) {
            if let Ok(mut v) = self.0.lock() {
                v.push(ops.to_vec());
            }
        }
    }

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn without_a_sink_nothing_is_recorded() {
        let mut p = Propagation::default();
        assert!(!p.is_on());
        p.also(0, args("SREM s a"));
        p.after(0, args("PEXPIREAT k 1"));
        p.expired(0, b"k");
        p.end_command(0, &args("SET k v"), true, Own::AsCalled);
        assert!(p.unit.is_empty() && p.after.is_empty() && p.expired.is_empty());
        assert_eq!(
            p.unit.capacity() + p.after.capacity() + p.expired.capacity(),
            0
        );
    }

    #[test]
    fn units_of_several_commands_are_transactions() {
        let mut p = Propagation::default();
        let sink = Arc::new(Sink::default());
        p.add_sink(sink.clone());
        // A command propagated as called, then one that replaced itself and had an
        // effect derived from it, in another database; an expired key goes first.
        let outer = p.begin_command();
        p.end_command(0, &args("SET a 1"), true, outer);
        let outer = p.begin_command();
        p.replace(args("SET b v PXAT 5"));
        p.after(1, args("PEXPIREAT b 4"));
        p.end_command(1, &args("SET b v EX 1"), true, outer);
        // A command that changed nothing propagates nothing.
        let outer = p.begin_command();
        p.end_command(0, &args("DEL nothing"), false, outer);
        p.expired(0, b"old");
        p.flush();
        let got = sink.0.lock().unwrap().clone();
        let line = |o: &Propagated| {
            let words: Vec<_> = o
                .argv
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            format!("{}:{}", o.db, words.join(" "))
        };
        let got: Vec<Vec<String>> = got.iter().map(|u| u.iter().map(line).collect()).collect();
        assert_eq!(
            got,
            vec![vec![
                "0:DEL old",
                "0:MULTI",
                "0:SET a 1",
                "1:SET b v PXAT 5",
                "1:PEXPIREAT b 4",
                "1:EXEC"
            ]]
        );
        // Nothing left for the next unit.
        p.flush();
        assert_eq!(sink.0.lock().unwrap().len(), 1);
    }
}
