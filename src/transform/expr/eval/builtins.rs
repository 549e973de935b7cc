//! The built-in names an expression may use: variables, functions, modules, and the methods
//! and attributes values have.

/// Built-in names: variables, functions and modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    /// `record` and `_`: the whole record.
    Record,
    /// `self`: the property's current value.
    SelfValue,
    /// `config`: `stream_map_config`.
    Config,
    /// `__stream_name__`.
    StreamName,
    /// `__original_stream_name__`.
    OriginalStreamName,
    /// `fake`: the Faker instance.
    Fake,
    /// The `json` module.
    Json,
    /// The `datetime` module.
    Datetime,
    /// `datetime.datetime`.
    DatetimeClass,
    /// `datetime.date`.
    DateClass,
    /// `datetime.timedelta`.
    DeltaClass,
    /// A function.
    Func(Func),
}

/// Built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// (each variant is the Python function of the same name)
pub enum Func {
    Int,
    Float,
    Str,
    Bool,
    Len,
    Md5,
    Sha256,
    Dict,
    List,
    Tuple,
    Set,
    Min,
    Max,
    Abs,
    Round,
    Sum,
    Sorted,
    Any,
    All,
    Range,
    Enumerate,
    Zip,
    JsonDumps,
    JsonLoads,
    DtFromIso,
    DtStrptime,
    DtNow,
    DtUtcNow,
    DateFromIso,
    DateToday,
    /// `format(value, spec)`, with a conversion (`r`, `s`, `a`) as a third argument: the
    /// replacement fields of f-strings. Named `__format__` so no record property is hidden.
    Format,
}

pub(super) const FUNCS: [(&str, Func); 21] = [
    ("int", Func::Int),
    ("float", Func::Float),
    ("str", Func::Str),
    ("bool", Func::Bool),
    ("len", Func::Len),
    ("md5", Func::Md5),
    ("sha256", Func::Sha256),
    ("dict", Func::Dict),
    ("list", Func::List),
    ("tuple", Func::Tuple),
    ("set", Func::Set),
    ("min", Func::Min),
    ("max", Func::Max),
    ("abs", Func::Abs),
    ("round", Func::Round),
    ("sum", Func::Sum),
    ("sorted", Func::Sorted),
    ("any", Func::Any),
    ("all", Func::All),
    ("range", Func::Range),
    ("enumerate", Func::Enumerate),
];

/// The name of a function the Singer SDK's evaluator does not define (its functions are
/// simpleeval's `int`, `float`, `str`, `rand`, `randint`, the compound types `list`, `tuple`,
/// `dict`, `set`, and the mapper's `bool`, `md5`, `sha256`, `datetime`, `json`); `None` for one
/// it has. f-strings call `__format__`, which the SDK runs as f-strings.
pub(crate) fn sdk_missing(f: Func) -> Option<&'static str> {
    Some(match f {
        Func::Len => "len",
        Func::Min => "min",
        Func::Max => "max",
        Func::Abs => "abs",
        Func::Round => "round",
        Func::Sum => "sum",
        Func::Sorted => "sorted",
        Func::Any => "any",
        Func::All => "all",
        Func::Range => "range",
        Func::Enumerate => "enumerate",
        Func::Zip => "zip",
        Func::Int
        | Func::Float
        | Func::Str
        | Func::Bool
        | Func::Md5
        | Func::Sha256
        | Func::Dict
        | Func::List
        | Func::Tuple
        | Func::Set
        | Func::JsonDumps
        | Func::JsonLoads
        | Func::DtFromIso
        | Func::DtStrptime
        | Func::DtNow
        | Func::DtUtcNow
        | Func::DateFromIso
        | Func::DateToday
        | Func::Format => return None,
    })
}

impl Global {
    /// The built-in a bare name refers to, if any.
    pub fn by_name(name: &str) -> Option<Global> {
        Some(match name {
            "record" | "_" => Global::Record,
            "self" => Global::SelfValue,
            "config" => Global::Config,
            "__stream_name__" => Global::StreamName,
            "__original_stream_name__" => Global::OriginalStreamName,
            "fake" => Global::Fake,
            "json" => Global::Json,
            "datetime" => Global::Datetime,
            "zip" => Global::Func(Func::Zip),
            "__format__" => Global::Func(Func::Format),
            _ => {
                return FUNCS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| Global::Func(*f));
            }
        })
    }

    /// Whether calling this name can work.
    pub fn is_callable(&self) -> bool {
        matches!(
            self,
            Global::Func(_) | Global::DatetimeClass | Global::DateClass | Global::DeltaClass
        )
    }

    /// The name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Global::Record => "record",
            Global::SelfValue => "self",
            Global::Config => "config",
            Global::StreamName => "__stream_name__",
            Global::OriginalStreamName => "__original_stream_name__",
            Global::Fake => "fake",
            Global::Json => "json",
            Global::Datetime => "datetime",
            Global::DatetimeClass => "datetime.datetime",
            Global::DateClass => "datetime.date",
            Global::DeltaClass => "datetime.timedelta",
            Global::Func(_) => "function",
        }
    }
}

pub(super) const STR_METHODS: &[&str] = &[
    "format",
    "lower",
    "upper",
    "strip",
    "lstrip",
    "rstrip",
    "split",
    "rsplit",
    "replace",
    "startswith",
    "endswith",
    "find",
    "rfind",
    "index",
    "count",
    "join",
    "title",
    "capitalize",
    "isdigit",
    "isalpha",
    "isalnum",
    "isnumeric",
    "isdecimal",
    "isspace",
    "islower",
    "isupper",
    "zfill",
    "splitlines",
    "casefold",
    "removeprefix",
    "removesuffix",
    "ljust",
    "rjust",
];
pub(super) const OTHER_METHODS: &[&str] = &[
    // `datetime.datetime(...)` and `datetime.timedelta(...)`: the classes, called.
    "datetime",
    "timedelta",
    "total_seconds",
    "get",
    "keys",
    "values",
    "items",
    "isoformat",
    "strftime",
    "timestamp",
    "date",
    "weekday",
    "isoweekday",
    "fromisoformat",
    "strptime",
    "now",
    "utcnow",
    "today",
    "dumps",
    "loads",
    "seed_instance",
];
pub(super) const ATTRIBUTES: &[&str] = &[
    "days",
    "seconds",
    "microseconds",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "microsecond",
    "datetime",
    "date",
];

/// Whether some value has a method called `name`.
pub(crate) fn is_known_method(name: &str) -> bool {
    STR_METHODS.contains(&name)
        || OTHER_METHODS.contains(&name)
        || crate::transform::expr::fake::is_method(name)
}

/// Whether some value has an attribute or method called `name`.
pub(crate) fn is_known_attribute(name: &str) -> bool {
    is_known_method(name) || ATTRIBUTES.contains(&name)
}
