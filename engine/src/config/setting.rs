//! One row of the settings table: a setting's names, kind, checks and access to its
//! field, in the manner of Redis's `standardConfig`.
//!
//! Every way of changing a setting goes through [`Setting::parse`] (CONFIG SET, a
//! string from a file or the environment) or [`Setting::accept`] (a typed file value),
//! then [`Setting::put`]; every way of reading one through [`Setting::show`].

use crate::config::EngineConfig;
use crate::store::Store;

/// A setting's value in the table's common form, between a field and the outside.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Num(i128),
    Bool(bool),
    Text(String),
}

/// A value for one `[engine]` key, as a config file or the environment gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SettingValue<'a> {
    /// `true` / `false` (yes/no settings).
    Bool(bool),
    /// An integer (counts, bounds, sizes in bytes).
    Int(i64),
    /// A float: no engine setting takes one, so it is always refused.
    Float(f64),
    /// A string: names, addresses, sizes with units (`"64mb"`), yes/no.
    Str(&'a str),
}

/// A setting that was refused: which key, and why (in Redis's words where Redis has
/// the setting).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    /// The `[engine]` key (the field name of [`EngineConfig`]).
    pub key: String,
    /// What is wrong with the value.
    pub message: String,
}

/// What a setting holds and how its text is read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `yes` / `no`.
    Bool,
    /// An integer within bounds.
    Int { min: i64, max: i64 },
    /// Bytes, with Redis's units (`1kb`, `5mb`, `2gb`; `k`, `m`, `g` are powers of
    /// 1000), within bounds.
    Memory { min: u64, max: u64 },
    /// One of a list of words, case-insensitive, kept lower-case.
    Enum(&'static [&'static str]),
    /// Text checked (and normalised) by `parse`, shown by `show`.
    Special {
        parse: fn(&str) -> Result<String, String>,
        show: fn(&str) -> String,
    },
}

/// CONFIG SET refuses to change it.
pub(crate) const IMMUTABLE: u8 = 1 << 0;
/// Not a CONFIG parameter: set only from the file (`listen`).
pub(crate) const FILE_ONLY: u8 = 1 << 1;
/// CONFIG SET refuses it as Redis refuses a protected config (`dir`, `dbfilename`):
/// it names files the server writes.
pub(crate) const PROTECTED: u8 = 1 << 2;

/// A change of the store after CONFIG SET that can fail.
pub(crate) type TryApply = fn(&mut Store) -> Result<(), String>;

/// One row of the table.
#[derive(Clone, Copy)]
pub(crate) struct Setting {
    /// The CONFIG name (Redis's).
    pub(crate) name: &'static str,
    /// Older names CONFIG still accepts (`hash-max-ziplist-entries`).
    pub(crate) aliases: &'static [&'static str],
    /// The `[engine]` key; `None` for a CONFIG parameter without a field of its own
    /// (`bind` and `port` are views of `listen`; `save` is accepted
    /// and ignored until persistence exists).
    pub(crate) key: Option<&'static str>,
    /// What the setting does (the field's doc comment), for the configuration
    /// reference.
    pub(crate) doc: &'static str,
    pub(crate) kind: Kind,
    pub(crate) flags: u8,
    /// Adjusts a checked value (Redis clamps `hz` to 1..=500).
    pub(crate) normalize: Option<fn(Value) -> Value>,
    /// Reads the field.
    pub(crate) get: fn(&EngineConfig) -> Value,
    /// Writes the field; false if the value does not fit it (not after a check).
    pub(crate) put: fn(&mut EngineConfig, Value) -> bool,
    /// Runs after CONFIG SET changed it, for state derived from the setting.
    pub(crate) apply: Option<fn(&mut Store)>,
    /// Like `apply`, for a change that can fail (turning the AOF on): an error undoes
    /// the whole CONFIG SET and is its reply, as Redis's failing apply functions.
    pub(crate) try_apply: Option<TryApply>,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setting").field("name", &self.name).finish()
    }
}

fn no_get(_: &EngineConfig) -> Value {
    Value::Text(String::new())
}

fn no_put(_: &mut EngineConfig, _: Value) -> bool {
    true
}

impl Setting {
    const fn row(name: &'static str, kind: Kind) -> Setting {
        Setting {
            name,
            aliases: &[],
            key: None,
            doc: "",
            kind,
            flags: 0,
            normalize: None,
            get: no_get,
            put: no_put,
            apply: None,
            try_apply: None,
        }
    }
    /// A yes/no setting.
    pub(crate) const fn boolean(name: &'static str) -> Setting {
        Setting::row(name, Kind::Bool)
    }
    /// An integer setting within `min..=max`.
    pub(crate) const fn int(name: &'static str, min: i64, max: i64) -> Setting {
        Setting::row(name, Kind::Int { min, max })
    }
    /// A size in bytes within `min..=max`, with units.
    pub(crate) const fn memory(name: &'static str, min: u64, max: u64) -> Setting {
        Setting::row(name, Kind::Memory { min, max })
    }
    /// One of `values`.
    pub(crate) const fn one_of(name: &'static str, values: &'static [&'static str]) -> Setting {
        Setting::row(name, Kind::Enum(values))
    }
    /// Text with its own check and display.
    pub(crate) const fn special(
        name: &'static str,
        parse: fn(&str) -> Result<String, String>,
        show: fn(&str) -> String,
    ) -> Setting {
        Setting::row(name, Kind::Special { parse, show })
    }
    /// Older names.
    pub(crate) const fn alias(mut self, aliases: &'static [&'static str]) -> Setting {
        self.aliases = aliases;
        self
    }
    /// Not changeable by CONFIG SET.
    pub(crate) const fn immutable(mut self) -> Setting {
        self.flags |= IMMUTABLE;
        self
    }
    /// Not changeable by CONFIG SET, as a protected config.
    pub(crate) const fn protected(mut self) -> Setting {
        self.flags |= PROTECTED;
        self
    }
    /// Not a CONFIG parameter.
    pub(crate) const fn file_only(mut self) -> Setting {
        self.flags |= FILE_ONLY;
        self
    }
    /// Adjusts checked values.
    pub(crate) const fn normalize(mut self, f: fn(Value) -> Value) -> Setting {
        self.normalize = Some(f);
        self
    }
    /// Runs `f` on the store after CONFIG SET changed the setting.
    pub(crate) const fn apply(mut self, f: fn(&mut Store)) -> Setting {
        self.apply = Some(f);
        self
    }
    /// Runs `f` on the store after CONFIG SET changed the setting; its error undoes
    /// the CONFIG SET.
    pub(crate) const fn try_apply(mut self, f: TryApply) -> Setting {
        self.try_apply = Some(f);
        self
    }
    /// A CONFIG parameter without a field: reads and writes through `get` and `put`.
    pub(crate) const fn view(
        mut self,
        get: fn(&EngineConfig) -> Value,
        put: fn(&mut EngineConfig, Value) -> bool,
    ) -> Setting {
        self.get = get;
        self.put = put;
        self
    }

    /// Whether it is a CONFIG parameter.
    pub(crate) fn in_config(&self) -> bool {
        self.flags & FILE_ONLY == 0
    }

    /// Whether CONFIG knows it under `name` (lower-case).
    pub(crate) fn answers_to(&self, name: &str) -> bool {
        self.in_config() && (self.name == name || self.aliases.contains(&name))
    }

    /// Reads a value from CONFIG SET's text, with Redis's checks and error texts.
    pub(crate) fn parse(&self, s: &str) -> Result<Value, String> {
        let v = match self.kind {
            Kind::Bool => {
                if s.eq_ignore_ascii_case("yes") {
                    Value::Bool(true)
                } else if s.eq_ignore_ascii_case("no") {
                    Value::Bool(false)
                } else {
                    return Err("argument must be 'yes' or 'no'".into());
                }
            }
            Kind::Int { .. } => {
                let n = crate::util::parse_i64(s.as_bytes())
                    .ok_or_else(|| "argument couldn't be parsed into an integer".to_string())?;
                self.in_bounds(n as i128)?
            }
            Kind::Memory { .. } => {
                if s.starts_with('-') {
                    return Err("argument must be a memory value".into());
                }
                self.in_bounds(parse_memory(s)? as i128)?
            }
            Kind::Enum(values) => {
                let l = s.to_ascii_lowercase();
                if !values.contains(&l.as_str()) {
                    return Err(format!(
                        "argument(s) must be one of the following: {}",
                        values.join(", ")
                    ));
                }
                Value::Text(l)
            }
            Kind::Special { parse, .. } => Value::Text(parse(s)?),
        };
        Ok(self.normalized(v))
    }

    /// Reads a typed value from a config file or the environment: what the kind's
    /// TOML type is, or its CONFIG text.
    pub(crate) fn accept(&self, v: SettingValue) -> Result<Value, String> {
        match (self.kind, v) {
            (Kind::Bool, SettingValue::Bool(b)) => Ok(Value::Bool(b)),
            (Kind::Int { .. } | Kind::Memory { .. }, SettingValue::Int(n)) => {
                Ok(self.normalized(self.in_bounds(n as i128)?))
            }
            (
                Kind::Bool | Kind::Memory { .. } | Kind::Enum(_) | Kind::Special { .. },
                SettingValue::Str(s),
            ) => self.parse(s),
            (kind, _) => Err(format!("expected {}", kind.expected())),
        }
    }

    /// Checks the value a config holds (an [`EngineConfig`] built in code).
    pub(crate) fn check(&self, cfg: &EngineConfig) -> Result<(), String> {
        match ((self.get)(cfg), self.kind) {
            (Value::Num(n), Kind::Int { .. } | Kind::Memory { .. }) => {
                self.in_bounds(n).map(|_| ())
            }
            (Value::Text(t), Kind::Enum(_) | Kind::Special { .. }) => self.parse(&t).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// CONFIG GET's text of the value `cfg` holds.
    pub(crate) fn show(&self, cfg: &EngineConfig) -> String {
        match ((self.get)(cfg), self.kind) {
            (Value::Bool(b), _) => if b { "yes" } else { "no" }.to_string(),
            (Value::Num(n), _) => n.to_string(),
            (Value::Text(t), Kind::Special { show, .. }) => show(&t),
            (Value::Text(t), _) => t,
        }
    }

    fn normalized(&self, v: Value) -> Value {
        match self.normalize {
            Some(f) => f(v),
            None => v,
        }
    }

    fn in_bounds(&self, n: i128) -> Result<Value, String> {
        let (min, max) = match self.kind {
            Kind::Int { min, max } => (min as i128, max as i128),
            Kind::Memory { min, max } => (min as i128, max as i128),
            _ => return Ok(Value::Num(n)),
        };
        if n < min || n > max {
            return Err(format!(
                "argument must be between {min} and {max} inclusive"
            ));
        }
        Ok(Value::Num(n))
    }
}

impl Kind {
    /// What values it takes, for the configuration reference.
    pub(crate) fn describe(&self) -> String {
        match self {
            Kind::Bool => "yes/no (`true`, `false`, `\"yes\"`, `\"no\"`)".into(),
            // i64::MAX is the table's way to say "no upper bound".
            Kind::Int { min, max } if *max == i64::MAX => format!("integer, at least {min}"),
            Kind::Int { min, max } => format!("integer, {min} to {max}"),
            Kind::Memory { min, .. } => {
                format!("bytes, at least {min}; or a size such as `\"64mb\"`")
            }
            Kind::Enum(values) => format!(
                "one of {}",
                values
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Kind::Special { .. } => "text".into(),
        }
    }

    /// A TOML value this kind refuses (`None` for free text, whose checks differ per
    /// setting).
    pub(crate) fn bad_example(&self) -> Option<String> {
        match self {
            Kind::Bool => Some("\"maybe\"".into()),
            Kind::Int { min, .. } if *min > i64::MIN => Some((*min as i128 - 1).to_string()),
            Kind::Int { .. } => Some("\"x\"".into()),
            Kind::Memory { .. } => Some("\"-1mb\"".into()),
            Kind::Enum(_) => Some("\"sometimes\"".into()),
            Kind::Special { .. } => None,
        }
    }

    /// What a config file must give, for errors.
    fn expected(&self) -> &'static str {
        match self {
            Kind::Bool => "true or false",
            Kind::Int { .. } => "an integer",
            Kind::Memory { .. } => "a size: an integer (bytes) or a string like \"64mb\"",
            Kind::Enum(_) | Kind::Special { .. } => "a string",
        }
    }
}

/// Parses `100`, `1kb`, `5mb`, `2gb` (and `k`, `m`, `g` as powers of 1000), as Redis's
/// `memtoull` does.
pub(crate) fn parse_memory(v: &str) -> Result<u64, String> {
    let l = v.to_ascii_lowercase();
    let (digits, mul) = if let Some(d) = l.strip_suffix("kb") {
        (d, 1024)
    } else if let Some(d) = l.strip_suffix("mb") {
        (d, 1024 * 1024)
    } else if let Some(d) = l.strip_suffix("gb") {
        (d, 1024 * 1024 * 1024)
    } else if let Some(d) = l.strip_suffix('k') {
        (d, 1000)
    } else if let Some(d) = l.strip_suffix('m') {
        (d, 1000 * 1000)
    } else if let Some(d) = l.strip_suffix('g') {
        (d, 1000 * 1000 * 1000)
    } else if let Some(d) = l.strip_suffix('b') {
        (d, 1)
    } else {
        (l.as_str(), 1)
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| "argument must be a memory value".to_string())
}

/// A field type the table can hold: converts to and from [`Value`].
pub(crate) trait Field: Sized {
    fn to_value(&self) -> Value;
    fn from_value(v: Value) -> Option<Self>;
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn to_value(&self) -> Value {
                Value::Num(*self as i128)
            }
            fn from_value(v: Value) -> Option<Self> {
                match v {
                    Value::Num(n) => <$t>::try_from(n).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
int_field!(u32, u64, usize, i64);

impl Field for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
}

impl Field for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// Empty text is `None` (`requirepass ""` turns the password off).
impl Field for Option<String> {
    fn to_value(&self) -> Value {
        Value::Text(self.clone().unwrap_or_default())
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Text(t) => Some((!t.is_empty()).then_some(t)),
            _ => None,
        }
    }
}
