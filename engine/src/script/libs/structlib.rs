//! `struct` as Redis bundles it (Roberto Ierusalimschy's struct library,
//! `deps/lua/src/lua_struct.c`): `pack(fmt, ...)`, `unpack(fmt, data [, pos])` and
//! `size(fmt)`, byte for byte, on the x86-64 build Redis ships (`long` and `size_t`
//! of 8 bytes, `int` of 4, native little-endian, maximum alignment 8).
//!
//! Formats: `<` `>` endianness, `![n]` alignment, `x` padding, `b/B h/H l/L T i/In`
//! integers (`n` up to 32 bytes), `cn` chars (`c0`: the whole string when packing,
//! the previous value as length when unpacking), `s` zero-terminated, `f` `d`, and
//! ' ' ignored. The format is read as a C string (it ends at a NUL). Integers go
//! through the library's 64-bit `long`, so bytes past the 8th are zero.

use super::{
    check_bytes, check_number, lib_fn, num, opt_integer, ret, LibError, Results, MAX_CSTACK,
};
use mlua::{Lua, MultiValue, Table, Value};

/// `MAXINTSIZE`.
const MAX_INT_SIZE: i32 = 32;
/// `MAXALIGN` on x86-64.
const MAX_ALIGN: i32 = 8;

/// The `struct` table.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lib_fn(lua, |lua, args| pack(lua, &args).or_else(|e| e.raise(lua)))?,
    )?;
    t.raw_set(
        "unpack",
        lib_fn(lua, |lua, args| unpack(lua, args).or_else(|e| e.raise(lua)))?,
    )?;
    t.raw_set(
        "size",
        lib_fn(lua, |lua, args| size(lua, &args).or_else(|e| e.raise(lua)))?,
    )?;
    Ok(t)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

struct Header {
    endian: Endian,
    align: usize,
}

impl Header {
    fn new() -> Header {
        Header {
            endian: Endian::Little,
            align: 1,
        }
    }
}

/// The format as C reads it: up to its first NUL.
fn format(args: &MultiValue) -> Result<Vec<u8>, LibError> {
    let mut f = check_bytes(args, 0)?;
    if let Some(n) = f.iter().position(|&b| b == 0) {
        f.truncate(n);
    }
    Ok(f)
}

/// A cursor over the format.
struct Fmt {
    f: Vec<u8>,
    i: usize,
}

impl Fmt {
    fn next(&mut self) -> Option<u8> {
        let c = self.f.get(self.i).copied();
        self.i += 1;
        c
    }

    fn peek(&self) -> u8 {
        self.f.get(self.i).copied().unwrap_or(0)
    }

    /// `getnum`: the digits that follow, or `df`.
    fn num(&mut self, df: i32) -> Result<i32, LibError> {
        if !self.peek().is_ascii_digit() {
            return Ok(df);
        }
        let mut a: i32 = 0;
        while self.peek().is_ascii_digit() {
            let d = (self.peek() - b'0') as i32;
            if a > i32::MAX / 10 || a * 10 > i32::MAX - d {
                return Err(LibError::msg("integral size overflow"));
            }
            a = a * 10 + d;
            self.i += 1;
        }
        Ok(a)
    }

    /// `optsize`: the size of option `opt` (its digits read).
    fn size(&mut self, opt: u8) -> Result<usize, LibError> {
        Ok(match opt {
            b'B' | b'b' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'x' => 1,
            b'c' => self.num(1)? as usize,
            b'i' | b'I' => {
                let sz = self.num(4)?;
                if sz > MAX_INT_SIZE {
                    return Err(LibError::msg(format!(
                        "integral size {sz} is larger than limit of {MAX_INT_SIZE}"
                    )));
                }
                sz as usize
            }
            _ => 0,
        })
    }

    /// `controloptions`.
    fn control(&mut self, opt: u8, h: &mut Header) -> Result<(), LibError> {
        match opt {
            b' ' => {}
            b'>' => h.endian = Endian::Big,
            b'<' => h.endian = Endian::Little,
            b'!' => {
                let a = self.num(MAX_ALIGN)?;
                if a <= 0 || a & (a - 1) != 0 {
                    return Err(LibError::msg(format!("alignment {a} is not a power of 2")));
                }
                h.align = a as usize;
            }
            _ => {
                let mut m = b"invalid format option '".to_vec();
                m.push(opt);
                m.push(b'\'');
                return Err(LibError::Arg(1, m));
            }
        }
        Ok(())
    }
}

/// `gettoalign`: padding before an item of `size` at `len` (the C arithmetic, which
/// does not require `size` to be a power of 2).
fn to_align(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    size.wrapping_sub(len & (size - 1)) & (size - 1)
}

fn is_int_opt(opt: u8) -> bool {
    matches!(
        opt,
        b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I'
    )
}

/// A C cast of a double to `unsigned long` (gcc's x86-64 sequence for the undefined
/// cases: NaN gives 2^63, 2^64 and above 0).
fn to_ulong(n: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    if n.is_nan() || n < TWO63 {
        num::to_integer(n) as u64
    } else {
        (num::to_integer(n - TWO63) as u64) ^ (1 << 63)
    }
}

fn pack(lua: &Lua, args: &MultiValue) -> Result<MultiValue, LibError> {
    let mut fmt = Fmt {
        f: format(args)?,
        i: 0,
    };
    // `lua_pushnil(L)`: a mark after the arguments, which a missing one reads as.
    let mut marked = args.clone();
    marked.push_back(Value::Nil);
    let args = &marked;
    let mut h = Header::new();
    let mut arg = 1; // 0-based index of the next value (Lua's argument 2)
    let mut total: usize = 0;
    let mut out = Vec::new();
    while let Some(opt) = fmt.next() {
        let mut size = fmt.size(opt)?;
        let pad = to_align(total, &h, opt, size);
        total = total.wrapping_add(pad);
        out.resize(out.len() + pad, 0);
        match opt {
            _ if is_int_opt(opt) => {
                let n = check_number(args, arg)?;
                arg += 1;
                let mut value = if n < 0.0 {
                    num::to_integer(n) as u64
                } else {
                    to_ulong(n)
                };
                let mut buf = vec![0u8; size];
                let order: Box<dyn Iterator<Item = usize>> = match h.endian {
                    Endian::Little => Box::new(0..size),
                    Endian::Big => Box::new((0..size).rev()),
                };
                for i in order {
                    buf[i] = value as u8;
                    value = value.checked_shr(8).unwrap_or(0);
                }
                out.extend_from_slice(&buf);
            }
            b'x' => out.push(0),
            b'f' => {
                let f = check_number(args, arg)? as f32;
                arg += 1;
                out.extend_from_slice(&match h.endian {
                    Endian::Little => f.to_le_bytes(),
                    Endian::Big => f.to_be_bytes(),
                });
            }
            b'd' => {
                let d = check_number(args, arg)?;
                arg += 1;
                out.extend_from_slice(&match h.endian {
                    Endian::Little => d.to_le_bytes(),
                    Endian::Big => d.to_be_bytes(),
                });
            }
            b'c' | b's' => {
                let s = check_bytes(args, arg)?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // The C code names the argument after the string's.
                    return Err(LibError::arg(arg + 1, "string too short"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                    size += 1;
                }
            }
            _ => fmt.control(opt, &mut h)?,
        }
        total = total.wrapping_add(size);
    }
    Ok(ret(lua, lua.create_string(&out)?)?)
}

/// `getinteger` on the library's 64-bit `long` (x86 shifts: the count modulo 64).
fn get_integer(b: &[u8], endian: Endian, signed: bool) -> f64 {
    let mut l: u64 = 0;
    let mut push = |x: u8| l = (l << 8) | x as u64;
    match endian {
        Endian::Big => b.iter().for_each(|&x| push(x)),
        Endian::Little => b.iter().rev().for_each(|&x| push(x)),
    }
    if !signed {
        return l as f64;
    }
    let shift = ((b.len() as i64) * 8 - 1) & 63;
    let mask = u64::MAX << shift;
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

fn too_short() -> LibError {
    LibError::arg(2, "data string too short")
}

fn unpack(lua: &Lua, args: MultiValue) -> Result<MultiValue, LibError> {
    let mut fmt = Fmt {
        f: format(&args)?,
        i: 0,
    };
    let data = check_bytes(&args, 1)?;
    let ld = data.len();
    let start = opt_integer(&args, 2, 1)? as u64 as usize;
    if start == 0 {
        return Err(LibError::arg(3, "offset must be 1 or greater"));
    }
    let mut pos = start - 1;
    let mut h = Header::new();
    // Lua stack slots in use: the arguments, then the results.
    let nargs = args.len();
    let mut results = Results::new(lua)?;
    let fits = |pos: usize, size: usize| size <= ld && pos <= ld - size;
    while let Some(opt) = fmt.next() {
        let mut size = fmt.size(opt)?;
        pos = pos.wrapping_add(to_align(pos, &h, opt, size));
        if !fits(pos, size) {
            return Err(too_short());
        }
        // Room for the item and the next position.
        if nargs + results.len() + 2 > MAX_CSTACK {
            return Err(LibError::msg("stack overflow (too many results)"));
        }
        match opt {
            _ if is_int_opt(opt) => {
                let signed = opt.is_ascii_lowercase();
                let v = get_integer(&data[pos..pos + size], h.endian, signed);
                results.push(Value::Number(v))?;
            }
            b'x' => {}
            b'f' => {
                let b: [u8; 4] = data[pos..pos + 4].try_into().unwrap_or_default();
                let f = match h.endian {
                    Endian::Little => f32::from_le_bytes(b),
                    Endian::Big => f32::from_be_bytes(b),
                };
                results.push(Value::Number(f as f64))?;
            }
            b'd' => {
                let b: [u8; 8] = data[pos..pos + 8].try_into().unwrap_or_default();
                let d = match h.endian {
                    Endian::Little => f64::from_le_bytes(b),
                    Endian::Big => f64::from_be_bytes(b),
                };
                results.push(Value::Number(d))?;
            }
            b'c' => {
                if size == 0 {
                    let prev = if results.len() == 0 {
                        None
                    } else {
                        num::to_number(&results.last()?)
                    };
                    let Some(prev) = prev else {
                        return Err(LibError::msg("format 'c0' needs a previous size"));
                    };
                    size = to_ulong(prev) as usize;
                    results.pop()?;
                    if !fits(pos, size) {
                        return Err(too_short());
                    }
                }
                results.push(Value::String(lua.create_string(&data[pos..pos + size])?))?;
            }
            b's' => {
                let Some(e) = data[pos..].iter().position(|&b| b == 0) else {
                    return Err(LibError::msg("unfinished string in data"));
                };
                size = e + 1;
                results.push(Value::String(lua.create_string(&data[pos..pos + e])?))?;
            }
            _ => fmt.control(opt, &mut h)?,
        }
        pos = pos.wrapping_add(size);
    }
    results.push(Value::Number(pos.wrapping_add(1) as i64 as f64))?;
    Ok(results.ret()?)
}

fn size(lua: &Lua, args: &MultiValue) -> Result<MultiValue, LibError> {
    let mut fmt = Fmt {
        f: format(args)?,
        i: 0,
    };
    let mut h = Header::new();
    let mut pos: usize = 0;
    while let Some(opt) = fmt.next() {
        let size = fmt.size(opt)?;
        pos = pos.wrapping_add(to_align(pos, &h, opt, size));
        if opt == b's' {
            return Err(LibError::arg(1, "option 's' has no fixed size"));
        } else if opt == b'c' && size == 0 {
            return Err(LibError::arg(1, "option 'c0' has no fixed size"));
        }
        if !opt.is_ascii_alphanumeric() {
            fmt.control(opt, &mut h)?;
        }
        pos = pos.wrapping_add(size);
    }
    Ok(ret(lua, pos as i64 as f64)?)
}
