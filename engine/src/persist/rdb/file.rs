//! Whole RDB files (`rdbSaveRio` / `rdbLoadRio`): the `REDIS0010` header, aux fields,
//! every database with its keys and TTLs, the EOF opcode and the CRC64 trailer.

use super::crc64::Running;
use super::decode::Reader;
use super::encode::Encoder;
use super::object::{self, Invalid, Limits};
use super::{opcode, show_key, RdbError, RDB_VERSION, REDIS_VERSION};
use crate::keyspace::db::{lru_clock, Db, Entry};
use bytes::Bytes;
use std::io::{self, Read, Write};

/// Which eviction metadata is saved with each key, as the `maxmemory-policy` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eviction {
    /// Nothing (the policy uses neither LRU nor LFU).
    #[default]
    None,
    /// The idle time in seconds (`*-lru` policies).
    Lru,
    /// The access frequency (`*-lfu` policies).
    Lfu,
}

impl Eviction {
    /// The metadata a `maxmemory-policy` saves.
    pub fn for_policy(policy: &str) -> Eviction {
        if policy.ends_with("-lru") {
            Eviction::Lru
        } else if policy.ends_with("-lfu") {
            Eviction::Lfu
        } else {
            Eviction::None
        }
    }
}

/// How a file is written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// `rdbcompression`: LZF for strings longer than 20 bytes.
    pub compression: bool,
    /// `rdbchecksum`: the CRC64 trailer (0 when off, which loaders accept unchecked).
    pub checksum: bool,
    /// `list-max-listpack-size`: how lists are cut into quicklist nodes.
    pub list_max_listpack_size: i64,
    /// Eviction metadata saved per key.
    pub eviction: Eviction,
    /// The `used-mem` aux field.
    pub used_mem: u64,
    /// The `aof-base` aux field: whether this is the base of a multi-part AOF.
    pub aof_base: bool,
    /// More aux fields, written after Redis's own.
    pub aux: Vec<(Bytes, Bytes)>,
    /// The code of each FUNCTION library, saved after the aux fields
    /// (`rdbSaveFunctions`).
    pub functions: Vec<Bytes>,
}

impl Default for WriteOptions {
    /// Redis 7.0's defaults.
    fn default() -> Self {
        WriteOptions {
            compression: true,
            checksum: true,
            list_max_listpack_size: -2,
            eviction: Eviction::None,
            used_mem: 0,
            aof_base: false,
            aux: Vec::new(),
            functions: Vec::new(),
        }
    }
}

/// Output buffered in 64 KiB pieces, with the running checksum of what went out: the
/// one way bytes of an RDB file reach their writer, whole-file or piece by piece.
pub(crate) struct Out<W: Write> {
    inner: W,
    buf: Vec<u8>,
    crc: Running,
}

impl<W: Write> Out<W> {
    /// Output to `inner`.
    pub(crate) fn new(inner: W) -> Self {
        Out {
            inner,
            buf: Vec::with_capacity(1 << 16),
            crc: Running::default(),
        }
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.crc.update(&self.buf);
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Writes the EOF opcode and the CRC64 trailer (0 without `checksum`), flushes,
    /// and gives the writer back.
    pub(crate) fn finish(mut self, checksum: bool) -> io::Result<W> {
        self.write_all(&[opcode::EOF])?;
        self.flush_buf()?;
        let crc = if checksum { self.crc.value() } else { 0 };
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()?;
        self.inner.flush()
    }
}

/// The `REDIS0010` magic, the aux fields (Redis's own, then `opts.aux`), as of
/// `now` (Unix ms), and the function libraries.
pub(crate) fn write_header<W: Write>(
    w: &mut W,
    enc: &mut Encoder,
    now: u64,
    opts: &WriteOptions,
) -> io::Result<()> {
    write!(w, "REDIS{RDB_VERSION:04}")?;
    let aux_int = |n: u64| Bytes::from(n.to_string());
    let mut aux = vec![
        (
            Bytes::from_static(b"redis-ver"),
            Bytes::from_static(REDIS_VERSION.as_bytes()),
        ),
        (Bytes::from_static(b"redis-bits"), aux_int(64)),
        (Bytes::from_static(b"ctime"), aux_int(now / 1000)),
        (Bytes::from_static(b"used-mem"), aux_int(opts.used_mem)),
        (
            Bytes::from_static(b"aof-base"),
            aux_int(opts.aof_base as u64),
        ),
    ];
    aux.extend(opts.aux.iter().cloned());
    for (k, v) in &aux {
        w.write_all(&[opcode::AUX])?;
        enc.string(w, k)?;
        enc.string(w, v)?;
    }
    super::write_functions(w, &opts.functions, opts.compression)
}

/// `SELECTDB index` and the `RESIZEDB` hint that open a database's keys.
pub(crate) fn write_db_start<W: Write>(
    w: &mut W,
    enc: &Encoder,
    index: usize,
    keys: u64,
    volatile: u64,
) -> io::Result<()> {
    w.write_all(&[opcode::SELECTDB])?;
    enc.len(w, index as u64)?;
    w.write_all(&[opcode::RESIZEDB])?;
    enc.len(w, keys)?;
    enc.len(w, volatile)
}

/// One key: its expiry (`at`, Unix ms, 0 for none), eviction metadata, type, name and
/// value (`rdbSaveKeyValuePair`).
pub(crate) fn write_key<W: Write>(
    w: &mut W,
    enc: &mut Encoder,
    key: &[u8],
    entry: &Entry,
    at: u64,
    now: u64,
    opts: &WriteOptions,
) -> io::Result<()> {
    if at != 0 {
        w.write_all(&[opcode::EXPIRETIME_MS])?;
        w.write_all(&at.to_le_bytes())?;
    }
    match opts.eviction {
        Eviction::None => {}
        Eviction::Lru => {
            w.write_all(&[opcode::IDLE])?;
            enc.len(w, idle_seconds(entry, now))?;
        }
        // The stored counter (the LFU clock's low 8 bits), as of its last access: the
        // decay since then is not applied.
        Eviction::Lfu => w.write_all(&[opcode::FREQ, (entry.lru() & 0xFF) as u8])?,
    }
    w.write_all(&[object::type_of(&entry.value)])?;
    enc.string(w, key)?;
    object::write_value(enc, w, &entry.value, opts.list_max_listpack_size)
}

/// Writes every live key of `dbs` (database `i` is `dbs[i]`) as an RDB file at time
/// `now` (Unix ms): keys already expired at `now` are left out.
pub fn write_rdb<W: Write>(
    dbs: &[Db],
    now: u64,
    opts: &WriteOptions,
    out: W,
) -> Result<(), RdbError> {
    let mut w = Out::new(out);
    let mut enc = Encoder::new(opts.compression);
    write_header(&mut w, &mut enc, now, opts)?;
    for (index, db) in dbs.iter().enumerate() {
        let (keys, volatile) = db.iter_live(now).fold((0u64, 0u64), |(k, v), (key, _)| {
            (k + 1, v + (db.expire_at(key) != 0) as u64)
        });
        if keys == 0 {
            continue;
        }
        write_db_start(&mut w, &enc, index, keys, volatile)?;
        for (key, entry) in db.iter_live(now) {
            write_key(&mut w, &mut enc, key, entry, db.expire_at(key), now, opts)?;
        }
    }
    w.finish(opts.checksum)?;
    Ok(())
}

/// Seconds since the entry's last access on the 24-bit LRU clock.
fn idle_seconds(e: &Entry, now: u64) -> u64 {
    let clock = lru_clock(now);
    let lru = e.lru();
    (if clock >= lru {
        clock - lru
    } else {
        clock + (0xFF_FFFF - lru)
    }) as u64
}

/// How a file is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Encoding thresholds for the loaded values.
    pub limits: Limits,
    /// `databases`: a key in a database past this is an error, as in Redis.
    pub databases: usize,
    /// Keep keys whose TTL has passed: a replica loading its primary's snapshot (the
    /// primary's DELs remove them) and an AOF's RDB base (the tail may still refer to
    /// them), as Redis's `iAmMaster()` / `RDBFLAGS_AOF_PREAMBLE` rule. Otherwise they
    /// are dropped, having expired while the file sat on disk.
    pub keep_expired: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            limits: Limits::default(),
            databases: 16,
            keep_expired: false,
        }
    }
}

/// What a file held that did not become keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Keys whose TTL had passed (a master drops them on load).
    pub expired: u64,
    /// Empty collections (Redis skips them too).
    pub empty: u64,
    /// Module aux data: the engine has no modules.
    pub module_aux: u64,
}

/// A loaded file.
#[derive(Debug, Default)]
pub struct Loaded {
    /// One database per index, `databases` of them (taken by the engine on load).
    pub(crate) dbs: Vec<Db>,
    /// The aux fields in file order (`redis-ver`, `ctime`, ...).
    pub aux: Vec<(Bytes, Bytes)>,
    /// The file's RDB version.
    pub version: u32,
    /// The code of each FUNCTION library, in file order.
    pub functions: Vec<Bytes>,
    /// What was left out, and why.
    pub skipped: Skipped,
}

impl Loaded {
    /// The value of an aux field.
    pub fn aux(&self, name: &str) -> Option<&Bytes> {
        self.aux
            .iter()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Module value opcodes (`RDB_MODULE_OPCODE_*`), to walk over module aux data.
mod module_opcode {
    pub const EOF: u64 = 0;
    pub const SINT: u64 = 1;
    pub const UINT: u64 = 2;
    pub const FLOAT: u64 = 3;
    pub const DOUBLE: u64 = 4;
    pub const STRING: u64 = 5;
}

/// Loads an RDB file of any version up to 10 at time `now` (Unix ms).
pub fn read_rdb<R: Read>(input: R, now: u64, opts: &LoadOptions) -> Result<Loaded, RdbError> {
    let mut r = Reader::new(input);
    let header: [u8; 9] = r.array("the header")?;
    let version = std::str::from_utf8(&header[5..])
        .ok()
        .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|d| d.parse::<u32>().ok());
    let version = match version {
        Some(v) if &header[..5] == b"REDIS" => v,
        _ => {
            return Err(RdbError::NotRdb(
                String::from_utf8_lossy(&header).into_owned(),
            ))
        }
    };
    if !(1..=RDB_VERSION as u32).contains(&version) {
        return Err(RdbError::Version(version));
    }
    let mut loaded = Loaded {
        dbs: (0..opts.databases).map(|_| Db::default()).collect(),
        version,
        ..Default::default()
    };
    let mut db = 0usize;
    // Metadata opcodes that apply to the next key.
    let mut expire_at: Option<u64> = None;
    let mut idle: Option<u64> = None;
    loop {
        let at = r.offset();
        let t = r.u8("an opcode")?;
        match t {
            opcode::EXPIRETIME_MS => {
                expire_at = Some(i64::from_le_bytes(r.array("an expire time")?).max(0) as u64);
            }
            opcode::EXPIRETIME => {
                let secs = i32::from_le_bytes(r.array("an expire time")?);
                expire_at = Some((secs.max(0) as u64) * 1000);
            }
            opcode::IDLE => idle = Some(r.len("an idle time")?),
            opcode::FREQ => {
                // Loaded keys start with a fresh counter.
                r.u8("a frequency")?;
            }
            opcode::EOF => break,
            opcode::SELECTDB => {
                let n = r.len("a database number")?;
                db = usize::try_from(n)
                    .ok()
                    .filter(|&n| n < opts.databases)
                    .ok_or_else(|| {
                        RdbError::corrupt(
                            at,
                            format!(
                                "database {n} is out of range: the engine has {} databases",
                                opts.databases
                            ),
                        )
                    })?;
            }
            opcode::RESIZEDB => {
                // Sizing hints; lengths from the file never size an allocation.
                r.len("a database size")?;
                r.len("an expires size")?;
            }
            opcode::AUX => {
                let k = r.string("an aux field name")?;
                let v = r.string("an aux field value")?;
                loaded.aux.push((Bytes::from(k), Bytes::from(v)));
            }
            opcode::MODULE_AUX => {
                skip_module_aux(&mut r)?;
                loaded.skipped.module_aux += 1;
                tracing::warn!(offset = at, "RDB: module aux data skipped (no modules)");
            }
            opcode::FUNCTION2 => {
                let code = r.string("a function library")?;
                loaded.functions.push(Bytes::from(code));
            }
            opcode::FUNCTION_PRE_GA => {
                return Err(RdbError::corrupt(
                    at,
                    "functions in the pre-release format of Redis 7.0 RCs are not supported",
                ))
            }
            t => {
                let key = r.string("a key")?;
                let obj = r.object(t, &key)?;
                let expire = expire_at.take();
                let idle = idle.take();
                if !opts.keep_expired && expire.is_some_and(|e| e < now) {
                    loaded.skipped.expired += 1;
                    continue;
                }
                let value = match object::into_value(obj, &opts.limits) {
                    Ok(v) => v,
                    Err(Invalid::Empty) => {
                        loaded.skipped.empty += 1;
                        tracing::warn!(key = %show_key(&key), "RDB: empty key skipped");
                        continue;
                    }
                    Err(Invalid::Corrupt(what)) => {
                        return Err(RdbError::corrupt(
                            at,
                            format!("key {:?}: {what}", show_key(&key)),
                        ))
                    }
                };
                let target = loaded.dbs.get_mut(db).ok_or_else(|| {
                    RdbError::corrupt(at, "a key, but the engine has no databases")
                })?;
                if target.contains_raw(&key) {
                    return Err(RdbError::corrupt(
                        at,
                        format!("duplicate key {:?} in database {db}", show_key(&key)),
                    ));
                }
                let mut entry = Entry::new(value, now);
                if let Some(idle) = idle {
                    object::set_idle(&mut entry, idle, now);
                }
                target.insert_entry(key, entry, expire.unwrap_or(0));
            }
        }
    }
    if version >= 5 {
        let computed = r.checksum();
        let stored = u64::from_le_bytes(r.array("the checksum")?);
        // 0 means the file was written with `rdbchecksum no`.
        if stored != 0 && stored != computed {
            return Err(RdbError::Checksum { stored, computed });
        }
    }
    Ok(loaded)
}

/// Walks over one module aux record (`rdbLoadCheckModuleValue`): module id, `when`
/// opcode and value, then typed values up to the module EOF opcode.
fn skip_module_aux<R: Read>(r: &mut Reader<R>) -> Result<(), RdbError> {
    r.len("a module id")?;
    r.len("a module aux opcode")?;
    r.len("a module aux when")?;
    loop {
        let at = r.offset();
        match r.len("a module value opcode")? {
            module_opcode::EOF => return Ok(()),
            module_opcode::SINT | module_opcode::UINT => {
                r.len("a module integer")?;
            }
            module_opcode::FLOAT => {
                r.array::<4>("a module float")?;
            }
            module_opcode::DOUBLE => {
                r.array::<8>("a module double")?;
            }
            module_opcode::STRING => {
                r.string("a module string")?;
            }
            other => {
                return Err(RdbError::corrupt(
                    at,
                    format!("unknown module value opcode {other}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::rdb::dump_payload;
    use crate::types::hash::HashLimits;
    use crate::types::zset::ZSetLimits;
    use crate::types::{CompactBytes, Hash, List, Set, Value, ZSet};

    const NOW: u64 = 1_760_000_000_000;

    fn b(s: impl AsRef<[u8]>) -> Bytes {
        Bytes::copy_from_slice(s.as_ref())
    }

    /// Every type in every encoding, some with TTLs, in databases 0, 3 and 15; `n`
    /// scales the collections (several quicklist nodes from 1000 up).
    fn sample(n: usize) -> Vec<Db> {
        let mut dbs: Vec<Db> = (0..16).map(|_| Db::default()).collect();
        let put = |db: &mut Db, k: &str, v: Value, ttl: Option<u64>| {
            db.insert(k, v, NOW);
            if let Some(t) = ttl {
                db.set_expire(k.as_bytes(), NOW + t, NOW);
            }
        };
        let s = |v: &str| Value::Str(CompactBytes::from(v));
        put(&mut dbs[0], "int", s("-123456789"), None);
        put(&mut dbs[0], "embstr", s("hello"), Some(5000));
        put(&mut dbs[0], "raw", s(&"compressible ".repeat(20)), None);
        put(&mut dbs[0], "1234", s(""), None);
        let mut list = List::new();
        for i in 0..3 * n {
            list.push_back(b(format!("item-{i}")));
        }
        put(
            &mut dbs[3],
            "list",
            Value::List(Box::new(list)),
            Some(60_000),
        );
        let mut small = Hash::default();
        let mut big = Hash::default();
        for i in 0..n {
            big.insert(b(format!("f{i}")), b(i.to_string()), HashLimits::default());
        }
        // A long value makes it a hashtable whatever its size.
        big.insert(b("long"), b("v".repeat(65)), HashLimits::default());
        small.insert(b("name"), b("ada"), HashLimits::default());
        put(&mut dbs[3], "hash-lp", Value::Hash(Box::new(small)), None);
        put(&mut dbs[3], "hash-ht", Value::Hash(Box::new(big)), None);
        put(
            &mut dbs[15],
            "set-int",
            Value::Set(Box::new(Set::build(
                (0..n.min(500)).map(|i| b((i * 7).to_string())),
                512,
            ))),
            None,
        );
        put(
            &mut dbs[15],
            "set-ht",
            Value::Set(Box::new(Set::build([b("x"), b("y"), b("1")], 512))),
            None,
        );
        let mut zl = ZSet::new();
        let mut zs = ZSet::new();
        for i in 0..n {
            zs.insert(b(format!("m{i}")), i as f64 / 3.0, ZSetLimits::default());
        }
        zs.insert(b("m".repeat(65)), 0.5, ZSetLimits::default());
        zl.insert(b("a"), 1.5, ZSetLimits::default());
        zl.insert(b("b"), f64::NEG_INFINITY, ZSetLimits::default());
        put(&mut dbs[15], "zset-lp", Value::ZSet(Box::new(zl)), None);
        put(&mut dbs[15], "zset-sl", Value::ZSet(Box::new(zs)), Some(1));
        // Already expired at NOW: not written.
        put(&mut dbs[0], "gone", s("x"), None);
        dbs[0].set_expire(b"gone", NOW - 1, NOW - 2);
        dbs
    }

    /// Each database as (key, expiry, DUMP payload), sorted.
    fn snapshot(dbs: &[Db], now: u64) -> Vec<Vec<(Bytes, u64, Vec<u8>)>> {
        dbs.iter()
            .map(|db| {
                let mut v: Vec<_> = db
                    .iter_live(now)
                    .map(|(k, e)| {
                        (
                            k.to_bytes(),
                            db.expire_at(k),
                            dump_payload(&e.value, true, -2),
                        )
                    })
                    .collect();
                v.sort();
                v
            })
            .collect()
    }

    fn write(dbs: &[Db], opts: &WriteOptions) -> Vec<u8> {
        let mut out = Vec::new();
        write_rdb(dbs, NOW, opts, &mut out).unwrap();
        out
    }

    #[test]
    fn roundtrip_every_type_ttl_and_aux() {
        let dbs = sample(1000);
        let opts = WriteOptions {
            aux: vec![(b("coherent-binlog"), b("bin.000003:4711"))],
            used_mem: 1_234_567,
            ..Default::default()
        };
        let file = write(&dbs, &opts);
        assert_eq!(&file[..9], b"REDIS0010");
        let loaded = read_rdb(&file[..], NOW, &LoadOptions::default()).unwrap();
        assert_eq!(snapshot(&loaded.dbs, NOW), snapshot(&dbs, NOW));
        assert!(!loaded.dbs[0].contains_raw(b"gone"));
        assert_eq!(loaded.version, 10);
        assert_eq!(
            loaded.aux("redis-ver").map(|v| &v[..]),
            Some(&b"7.0.15"[..])
        );
        assert_eq!(loaded.aux("redis-bits").map(|v| &v[..]), Some(&b"64"[..]));
        assert_eq!(
            loaded.aux("used-mem").map(|v| &v[..]),
            Some(&b"1234567"[..])
        );
        assert_eq!(
            loaded.aux("coherent-binlog").map(|v| &v[..]),
            Some(&b"bin.000003:4711"[..])
        );
        assert_eq!(loaded.skipped, Skipped::default());
        // Loaded later, the key with a 1 ms TTL has expired and is left out.
        let later = read_rdb(&file[..], NOW + 2, &LoadOptions::default()).unwrap();
        assert!(!later.dbs[15].contains_raw(b"zset-sl"));
        assert_eq!(later.skipped.expired, 1);
    }

    #[test]
    fn options_change_the_bytes_not_the_data() {
        let dbs = sample(1000);
        for opts in [
            WriteOptions {
                compression: false,
                ..Default::default()
            },
            WriteOptions {
                checksum: false,
                ..Default::default()
            },
            WriteOptions {
                list_max_listpack_size: 5,
                eviction: Eviction::Lru,
                ..Default::default()
            },
            WriteOptions {
                eviction: Eviction::Lfu,
                ..Default::default()
            },
        ] {
            let file = write(&dbs, &opts);
            if !opts.checksum {
                assert_eq!(&file[file.len() - 8..], &[0; 8]);
            }
            let loaded = read_rdb(&file[..], NOW, &LoadOptions::default()).unwrap();
            assert_eq!(snapshot(&loaded.dbs, NOW), snapshot(&dbs, NOW), "{opts:?}");
        }
        assert!(
            write(
                &dbs,
                &WriteOptions {
                    compression: false,
                    ..Default::default()
                }
            )
            .len()
                > write(&dbs, &WriteOptions::default()).len()
        );
    }

    #[test]
    fn refuses_what_it_cannot_load() {
        let file = write(&sample(5), &WriteOptions::default());
        let opts = LoadOptions::default();
        // Every cut is an error, never a panic, and names an offset.
        for cut in 0..file.len() {
            let err = read_rdb(&file[..cut], NOW, &opts).unwrap_err();
            assert!(
                matches!(err, RdbError::Truncated { .. } | RdbError::NotRdb(_)),
                "cut {cut}: {err}"
            );
        }
        let mut flipped = file.clone();
        flipped[40] ^= 0x01;
        assert!(matches!(
            read_rdb(&flipped[..], NOW, &opts),
            Err(RdbError::Checksum { .. })
                | Err(RdbError::Corrupt { .. })
                | Err(RdbError::Blob { .. })
        ));
        let mut v11 = file.clone();
        v11[5..9].copy_from_slice(b"0011");
        assert!(matches!(
            read_rdb(&v11[..], NOW, &opts),
            Err(RdbError::Version(11))
        ));
        assert!(matches!(
            read_rdb(&b"RADIS0010"[..], NOW, &opts),
            Err(RdbError::NotRdb(_))
        ));
        let none = LoadOptions {
            databases: 0,
            ..Default::default()
        };
        assert!(read_rdb(&file[..], NOW, &none).is_err());
        // A database past `databases`.
        let few = LoadOptions {
            databases: 4,
            ..Default::default()
        };
        let err = read_rdb(&file[..], NOW, &few).unwrap_err();
        assert!(
            err.to_string().contains("database 15 is out of range"),
            "{err}"
        );
        // Garbled bytes with the checksum off reach every decoder: errors, no panics.
        let unchecked = write(
            &sample(5),
            &WriteOptions {
                checksum: false,
                ..Default::default()
            },
        );
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..3000 {
            let mut bad = unchecked.clone();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(9..bad.len());
                bad[i] = rng.u8(..);
            }
            let _ = read_rdb(&bad[..], NOW, &opts);
        }
    }

    /// A file built opcode by opcode: `REDIS<version>`, `body`, then EOF and a CRC64.
    fn handmade(version: &str, body: impl FnOnce(&mut Encoder, &mut Vec<u8>)) -> Vec<u8> {
        let mut e = Encoder::new(false);
        let mut out = format!("REDIS{version}").into_bytes();
        body(&mut e, &mut out);
        out.push(opcode::EOF);
        let crc = super::super::crc64::checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn opcodes_of_other_writers() {
        let file = handmade("0009", |e, w| {
            // Module aux data (module id, when opcode + value, typed values, EOF).
            w.push(opcode::MODULE_AUX);
            for n in [12345u64, 2, 2, 1, 7, 2, 8] {
                e.len(w, n).unwrap();
            }
            e.len(w, 3).unwrap();
            w.extend_from_slice(&1.5f32.to_le_bytes());
            e.len(w, 4).unwrap();
            w.extend_from_slice(&2.5f64.to_le_bytes());
            e.len(w, 5).unwrap();
            e.string(w, b"module string").unwrap();
            e.len(w, 0).unwrap();
            // A function library.
            w.push(opcode::FUNCTION2);
            e.string(
                w,
                b"#!lua name=lib\nredis.register_function('f', function() return 1 end)",
            )
            .unwrap();
            w.push(opcode::SELECTDB);
            e.len(w, 2).unwrap();
            // Seconds-resolution expiry (old files), idle time, frequency.
            w.push(opcode::EXPIRETIME);
            w.extend_from_slice(&((NOW / 1000 + 100) as i32).to_le_bytes());
            w.push(opcode::IDLE);
            e.len(w, 50).unwrap();
            w.push(super::super::kind::STRING);
            e.string(w, b"old").unwrap();
            e.string(w, b"value").unwrap();
            w.push(opcode::FREQ);
            w.push(200);
            w.push(super::super::kind::STRING);
            e.string(w, b"freq").unwrap();
            e.string(w, b"1").unwrap();
            // An empty list is skipped.
            w.push(super::super::kind::LIST);
            e.string(w, b"empty").unwrap();
            e.len(w, 0).unwrap();
        });
        let mut loaded = read_rdb(&file[..], NOW, &LoadOptions::default()).unwrap();
        assert_eq!(loaded.version, 9);
        assert_eq!(
            loaded.skipped,
            Skipped {
                module_aux: 1,
                empty: 1,
                expired: 0
            }
        );
        assert_eq!(loaded.functions.len(), 1);
        let db = &mut loaded.dbs[2];
        assert_eq!(db.expire_of(b"old", NOW), Some((NOW / 1000 + 100) * 1000));
        assert_eq!(
            db.peek(b"old", NOW).map(Entry::lru),
            Some(lru_clock(NOW - 50_000))
        );
        assert_eq!(db.expire_of(b"freq", NOW), Some(0));
        assert!(!db.contains_raw(b"empty"));
    }

    #[test]
    fn duplicate_keys_and_disabled_checksums() {
        let dup = handmade("0010", |e, w| {
            for _ in 0..2 {
                w.push(super::super::kind::STRING);
                e.string(w, b"k").unwrap();
                e.string(w, b"v").unwrap();
            }
        });
        let err = read_rdb(&dup[..], NOW, &LoadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"k\""), "{err}");
        // A zero checksum means "not computed" and is accepted.
        let mut unchecked = handmade("0010", |_, _| {});
        let n = unchecked.len();
        unchecked[n - 8..].fill(0);
        assert!(read_rdb(&unchecked[..], NOW, &LoadOptions::default()).is_ok());
        // Files before version 5 have no checksum at all.
        let mut v4 = b"REDIS0004".to_vec();
        v4.push(opcode::EOF);
        assert!(read_rdb(&v4[..], NOW, &LoadOptions::default()).is_ok());
    }
}
