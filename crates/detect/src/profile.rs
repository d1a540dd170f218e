//! Reading a profile: the Python frame-category table (one place), and the [`ProfileView`] the
//! profile detectors read — busy and idle samples, each category's samples and the code that
//! calls it, the event loop's blocked samples, the application's own hot functions.
//!
//! A stack's category is that of its leaf-most frame that has one: `json.dumps` called from a
//! logging formatter is serialization, a handler's `emit` calling `os.fsync` is logging. A
//! sampler records Python frames only, so a C function (`sorted`, `time.sleep`, `os.fsync`, a C
//! serializer) shows as the Python line that calls it: when the profile carries that line's text,
//! the category is read from it, and the finding says so.
//!
//! | category | frames |
//! |---|---|
//! | serialization | `json`, `simplejson`, `orjson`, `ujson`, `pickle`, `msgpack`, `pydantic`, `pydantic_core`, `marshmallow`, Django REST framework's serializers, fields and renderers, FastAPI's `jsonable_encoder`; a line calling `json.dumps`/`orjson.dumps`/`.model_dump(`… |
//! | logging | `logging` (handlers, formatters), any `*Handler.emit`/`*.emit`; `fsync` under them |
//! | regex compilation | `re._compiler`, `re._parser`, `sre_compile`, `sre_parse`, `re._compile`, `_sre.compile` — compilation, not matching |
//! | sorting | `sorted`, `list.sort` (by name where the profile has C functions, else a line calling them), `heapq`, a sort key's `<lambda>`, with the ORM attribute reads under it |
//! | ORM lazy loading | SQLAlchemy's `strategies.py` lazy loader, Django's `related_descriptors.py` |
//! | database | `sqlalchemy`, `psycopg`, `psycopg2`, `asyncpg`, `django/db` |
//! | HTTP client | `requests`, `urllib3`, `httpx`, `httpcore`, `http/client.py`, `aiohttp` |
//! | sleep | `time.sleep` (a line calling it) |
//! | idle | waiting for work: a selector's `select`/`poll`, `threading` waits, `queue.get`, `accept`, a thread pool's idle `_worker`; an empty stack |
//! | application | what is neither the standard library nor an installed package |

use std::collections::HashMap;

use chokepoint_evidence::{Frame, Profile, Resource, Stack, Subject};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::finding::{Basis, Confidence, EvidenceItem};
use crate::registry::{Conclusion, Estimate};
use crate::stack::{Framework, Orm, Server, ServiceStack};

/// What a frame is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Category {
    Serialization,
    Logging,
    RegexCompile,
    Sorting,
    LazyLoad,
    Database,
    HttpClient,
    Sleep,
    FileIo,
}

impl Category {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Category::Serialization => "serialization",
            Category::Logging => "logging",
            Category::RegexCompile => "regex compilation",
            Category::Sorting => "sorting",
            Category::LazyLoad => "ORM lazy loading",
            Category::Database => "the database driver",
            Category::HttpClient => "HTTP client calls",
            Category::Sleep => "sleeping",
            Category::FileIo => "file I/O",
        }
    }
}

/// Where a frame's code comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Application,
    Stdlib,
    Library,
    Native,
}

/// Modules of the standard library, by first path component (py-spy shortens paths to them).
const STDLIB: &[&str] = &[
    "abc",
    "argparse",
    "ast",
    "asyncio",
    "base64",
    "bisect",
    "codecs",
    "collections",
    "concurrent",
    "contextlib",
    "contextvars",
    "copy",
    "copyreg",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "email",
    "encodings",
    "enum",
    "functools",
    "genericpath",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http",
    "importlib",
    "inspect",
    "io",
    "ipaddress",
    "json",
    "linecache",
    "locale",
    "logging",
    "mimetypes",
    "multiprocessing",
    "ntpath",
    "numbers",
    "operator",
    "os",
    "pathlib",
    "pickle",
    "posixpath",
    "pprint",
    "queue",
    "random",
    "re",
    "selectors",
    "shutil",
    "signal",
    "socket",
    "socketserver",
    "sre_compile",
    "sre_parse",
    "ssl",
    "stat",
    "string",
    "struct",
    "subprocess",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "traceback",
    "types",
    "typing",
    "urllib",
    "uuid",
    "warnings",
    "weakref",
    "zipfile",
    "zlib",
    "runpy",
    "site",
    "sysconfig",
    "tokenize",
    "token",
    "dis",
    "opcode",
    "fnmatch",
    "glob",
    "statistics",
    "fractions",
    "calendar",
    "zoneinfo",
    "wsgiref",
    "xml",
    "sqlite3",
    "unittest",
    "cProfile",
    "profile",
    "pstats",
    "timeit",
    "trace",
    "gc",
    "sys",
    "builtins",
];

/// Installed packages common in Python web services, by first path component (for shortened
/// paths; a full path under `site-packages` or `dist-packages` is a package whatever its name).
const PACKAGES: &[&str] = &[
    "aiohttp",
    "anyio",
    "asgiref",
    "asyncpg",
    "celery",
    "certifi",
    "charset_normalizer",
    "click",
    "django",
    "fastapi",
    "flask",
    "gevent",
    "greenlet",
    "gunicorn",
    "h11",
    "h2",
    "httpcore",
    "httptools",
    "httpx",
    "idna",
    "itsdangerous",
    "jinja2",
    "markupsafe",
    "marshmallow",
    "msgpack",
    "opentelemetry",
    "orjson",
    "psycopg",
    "psycopg2",
    "psycopg_pool",
    "pydantic",
    "pydantic_core",
    "redis",
    "requests",
    "rest_framework",
    "simplejson",
    "sniffio",
    "sqlalchemy",
    "starlette",
    "typing_extensions",
    "ujson",
    "urllib3",
    "uvicorn",
    "uvloop",
    "watchfiles",
    "websockets",
    "werkzeug",
    "wrapt",
    "yaml",
    "sentry_sdk",
    "ddtrace",
    "prometheus_client",
    "structlog",
    "loguru",
    "pymongo",
    "kombu",
    "boto3",
    "botocore",
];

/// The module path of a file: after `site-packages/`, `dist-packages/` or `lib/pythonX.Y/`,
/// else as written (`json/encoder.py`).
fn module_path(file: &str) -> (&str, Option<Origin>) {
    for marker in ["site-packages/", "dist-packages/"] {
        if let Some(at) = file.rfind(marker) {
            return (&file[at + marker.len()..], Some(Origin::Library));
        }
    }
    if let Some(at) = file.find("/lib/python") {
        let rest = &file[at + "/lib/python".len()..];
        if let Some(slash) = rest.find('/') {
            return (&rest[slash + 1..], Some(Origin::Stdlib));
        }
    }
    (file, None)
}

fn first_component(module: &str) -> &str {
    let first = module.split('/').next().unwrap_or(module);
    first.strip_suffix(".py").unwrap_or(first)
}

fn origin(frame: &Frame) -> Origin {
    let file = frame.file.as_str();
    if file.is_empty() || file == "~" || file.starts_with('<') {
        return Origin::Native;
    }
    let (module, known) = module_path(file);
    if let Some(origin) = known {
        return origin;
    }
    // An installed entry point (`.venv/bin/gunicorn`) is the server's, not the application's.
    if file.contains("/bin/") && !file.ends_with(".py") {
        return Origin::Library;
    }
    // A relative (shortened) path names its package first; an absolute one outside the
    // interpreter's library is the application's.
    if file.starts_with('/') {
        return Origin::Application;
    }
    let first = first_component(module);
    if STDLIB.contains(&first) || first.starts_with('_') {
        Origin::Stdlib
    } else if PACKAGES.contains(&first) {
        Origin::Library
    } else {
        Origin::Application
    }
}

const SERIALIZERS: &[&str] = &[
    "json",
    "simplejson",
    "orjson",
    "ujson",
    "pickle",
    "_pickle",
    "copyreg",
    "msgpack",
    "pydantic",
    "pydantic_core",
    "marshmallow",
];

/// The category of a frame by its module and name, without reading its line.
fn category_by_name(frame: &Frame) -> Option<Category> {
    let (module, _) = module_path(&frame.file);
    let first = first_component(module);
    let function = frame.function.as_str();
    if frame.file.is_empty() || frame.file == "~" || frame.file.starts_with("<built-in") {
        // C functions, named as cProfile and pyinstrument name them.
        let name = function;
        return if name.contains("sorted") || name.contains("'sort' of 'list'") {
            Some(Category::Sorting)
        } else if name.contains("json") || name.contains("pickle") || name.contains("msgpack") {
            Some(Category::Serialization)
        } else if name.contains("_sre.compile") {
            Some(Category::RegexCompile)
        } else if name.contains("time.sleep") || name == "sleep" {
            Some(Category::Sleep)
        } else if name.contains("fsync") {
            Some(Category::Logging)
        } else {
            None
        };
    }
    if first == "logging" || function.ends_with(".emit") {
        return Some(Category::Logging);
    }
    if matches!(
        module,
        "re/_compiler.py" | "re/_parser.py" | "re/_casefix.py" | "sre_compile.py" | "sre_parse.py"
    ) || (module == "re/__init__.py" || module == "re.py") && function == "_compile"
    {
        return Some(Category::RegexCompile);
    }
    if SERIALIZERS.contains(&first)
        || module.starts_with("rest_framework/serializers")
        || module.starts_with("rest_framework/fields")
        || module.starts_with("rest_framework/renderers")
        || module == "fastapi/encoders.py"
        || function == "jsonable_encoder"
    {
        return Some(Category::Serialization);
    }
    if first == "heapq" {
        return Some(Category::Sorting);
    }
    if module == "sqlalchemy/orm/strategies.py" && function.contains("Lazy")
        || module.starts_with("django/db/models/fields/related_descriptors")
    {
        return Some(Category::LazyLoad);
    }
    if matches!(
        first,
        "sqlalchemy" | "psycopg" | "psycopg2" | "psycopg_pool" | "asyncpg"
    ) || module.starts_with("django/db")
        || is_database_instrumentation(module)
    {
        return Some(Category::Database);
    }
    if matches!(first, "requests" | "urllib3" | "httpx" | "httpcore" | "aiohttp")
        || module == "http/client.py"
    {
        return Some(Category::HttpClient);
    }
    None
}

/// OpenTelemetry's database instrumentations wrap the driver's calls: their frames are where a
/// thread waits for the database (`CursorTracer.traced_execution` calling psycopg2's C
/// `execute`).
fn is_database_instrumentation(module: &str) -> bool {
    module
        .strip_prefix("opentelemetry/instrumentation/")
        .is_some_and(|rest| {
            [
                "dbapi/",
                "psycopg2/",
                "psycopg/",
                "asyncpg/",
                "sqlalchemy/",
                "pymysql/",
                "mysql/",
                "sqlite3/",
                "aiopg/",
            ]
            .iter()
            .any(|driver| rest.starts_with(driver))
        })
}

/// The category a line of application code shows by what it calls (C functions a sampler does
/// not see).
fn category_by_source(source: &str) -> Option<Category> {
    let code = source.split('#').next().unwrap_or(source);
    let calls = |needle: &str| code.contains(needle);
    if calls("sorted(") || calls(".sort(") || calls("heapq.") {
        Some(Category::Sorting)
    } else if calls("json.dumps(")
        || calls("json.dump(")
        || calls("pickle.dumps(")
        || calls(".model_dump")
        || calls("jsonable_encoder(")
    {
        Some(Category::Serialization)
    } else if calls("re.compile(") {
        Some(Category::RegexCompile)
    } else if calls("time.sleep(") {
        Some(Category::Sleep)
    } else if calls(".execute(")
        || calls(".executemany(")
        || calls(".fetchall(")
        || calls(".fetchone(")
        || calls(".fetchmany(")
        || calls(".commit()")
    {
        // A DB-API driver written in C (psycopg2): the line is where the thread waits for the
        // database.
        Some(Category::Database)
    } else if calls("os.fsync(") || calls(".flush()") && code.contains("log") {
        Some(Category::Logging)
    } else if calls("open(") || calls(".read(") || calls(".write(") || calls(".readlines(") {
        Some(Category::FileIo)
    } else {
        None
    }
}

/// Whether a stack waits for work (not busy): its leaf is a wait.
fn waits(leaf: Option<&Frame>) -> bool {
    let Some(frame) = leaf else { return true };
    let (module, _) = module_path(&frame.file);
    let function = frame.function.as_str();
    let name = function.rsplit('.').next().unwrap_or(function);
    match module {
        "selectors.py" => true,
        "threading.py" => matches!(name, "wait" | "_wait_for_tstate_lock" | "join" | "acquire"),
        "queue.py" => matches!(name, "get" | "_get" | "wait"),
        "socket.py" | "socketserver.py" => matches!(name, "accept" | "serve_forever"),
        // Servers' own loops waiting for connections: waitress's asyncore `select`, gunicorn's
        // arbiter and sync workers.
        "waitress/wasyncore.py" => matches!(name, "poll" | "poll2" | "loop"),
        "gunicorn/arbiter.py" => matches!(name, "sleep" | "run"),
        "gunicorn/workers/sync.py" => matches!(name, "wait" | "run_for_multiple" | "run_for_one"),
        "concurrent/futures/thread.py" => name == "_worker",
        "multiprocessing/connection.py" => matches!(name, "wait" | "poll" | "_poll"),
        _ => {
            frame.file.is_empty()
                && (function.contains("'poll' of 'select")
                    || function.contains("'acquire' of '_thread")
                    || function.contains("select.select")
                    || function.contains("'control' of 'select.kqueue"))
        }
    }
}

/// Whether a frame is an asyncio event loop running callbacks.
fn is_loop_frame(frame: &Frame) -> bool {
    let (module, _) = module_path(&frame.file);
    match module {
        "asyncio/base_events.py" => matches!(
            frame.function.as_str(),
            "run_forever" | "BaseEventLoop.run_forever" | "_run_once" | "BaseEventLoop._run_once"
        ),
        "asyncio/events.py" => frame.function.ends_with("_run"),
        _ => frame.file.contains("uvloop"),
    }
}

/// A process measured under this share of the cores it can use over a profile's seconds spent
/// its busy samples waiting.
pub(crate) const WAITING_CPU_SHARE: f64 = 0.5;

/// The event loop's samples that one line of the application holds, with no call seen under it,
/// to infer a blocking call there…
pub(crate) const LOOP_HELD_SHARE: f64 = 0.5;
/// …when the loop reaches its selector (waiting for work) in fewer of them than this.
pub(crate) const LOOP_IDLE_SHARE: f64 = 0.05;

/// A category seen in a stack, and the frames around it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Classified {
    pub(crate) category: Category,
    /// The frame that showed the category.
    pub(crate) frame: u32,
    /// The nearest application frame at or above it (the code that calls it).
    pub(crate) caller: Option<u32>,
    /// Whether the category was read from the line's text.
    pub(crate) inferred: bool,
}

/// Samples of one (category, caller) or one frame.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    pub(crate) inferred: u64,
}

/// A profile as the detectors read it.
pub(crate) struct ProfileView<'a> {
    pub(crate) profile: &'a Profile,
    /// Samples (or µs) of threads doing something.
    pub(crate) busy: u64,
    /// Samples (or µs) in all.
    pub(crate) total: u64,
    /// Busy samples per category.
    pub(crate) categories: HashMap<Category, Tally>,
    /// Busy samples per (category, calling application frame).
    pub(crate) callers: HashMap<(Category, Option<u32>), Tally>,
    /// Busy samples per (category, frame that showed it).
    pub(crate) category_frames: HashMap<(Category, u32), Tally>,
    /// Busy samples per application frame: self (leaf-most application frame), inclusive.
    pub(crate) app_self: HashMap<u32, u64>,
    pub(crate) app_inclusive: HashMap<u32, u64>,
    /// Busy samples in no category, per leaf-most application frame.
    pub(crate) app_uncategorized: HashMap<u32, u64>,
    /// Samples of event-loop threads, and those blocked in a call while running a callback, per
    /// (category, calling frame, leaf frame).
    pub(crate) loop_samples: u64,
    pub(crate) loop_blocked: HashMap<(Category, Option<u32>), Tally>,
    /// Samples of event-loop threads waiting for work (in the selector).
    pub(crate) loop_idle: u64,
    /// Busy samples of event-loop threads whose leaf is an application line in no category, per
    /// line: a call the sampler cannot see into, or Python computing.
    pub(crate) loop_opaque: HashMap<u32, u64>,
    /// What the service is built with, for fixes in its terms.
    pub(crate) stack: ServiceStack,
    /// The CPU the sampler of a load ramp measured for the profiled process over the profile's
    /// time, in cores, when one ran beside it: what the busy samples really cost.
    pub(crate) cpu_cores: Option<f64>,
    /// Busy samples whose leaf is a call that waits rather than computes — a sleep, a database
    /// driver or an HTTP client waiting on its socket, a file read — counted when the measured
    /// CPU says the busy threads mostly waited.
    pub(crate) waiting_in_calls: u64,
    /// Busy samples waiting in calls out of the process, the event loop's socket calls too
    /// ([`Self::calls_out`]).
    pub(crate) calling: u64,
    infos: Vec<FrameInfo>,
}

/// The stack a profile's frames show: the packages its stacks run.
pub(crate) fn stack_of(profile: &Profile) -> ServiceStack {
    let mut stack = ServiceStack::default();
    // The most specific framework whose package has frames: FastAPI runs on Starlette, Django
    // REST framework on Django.
    let (mut fastapi, mut rest, mut django, mut flask) = (false, false, false, false);
    let mut seen = |module: &str| {
        let first = module.split('/').next().unwrap_or(module);
        match first {
            "rest_framework" => rest = true,
            "django" => {
                django = true;
                if module.starts_with("django/db/models") {
                    stack.orm = Some(Orm::Django);
                }
            }
            "fastapi" | "starlette" => fastapi = true,
            "flask" | "werkzeug" if !module.starts_with("werkzeug/serving") => flask = true,
            "sqlalchemy" if module.starts_with("sqlalchemy/orm") => stack.orm = Some(Orm::SqlAlchemy),
            "psycopg" | "psycopg2" | "asyncpg" if stack.orm.is_none() => stack.orm = Some(Orm::Driver),
            "waitress" => stack.server = Some(Server::Waitress),
            "gunicorn" => stack.server = Some(Server::Gunicorn),
            "uvicorn" => {
                stack.server.get_or_insert(Server::Uvicorn);
            }
            "hypercorn" => {
                stack.server.get_or_insert(Server::Hypercorn);
            }
            _ if module.starts_with("werkzeug/serving") || module.starts_with("django/core/servers") => {
                stack.server.get_or_insert(Server::Development);
            }
            _ => {}
        }
    };
    for frame in &profile.frames {
        seen(module_path(&frame.file).0);
    }
    stack.framework = if fastapi {
        Some(Framework::FastApi)
    } else if rest {
        Some(Framework::DjangoRest)
    } else if django {
        Some(Framework::Django)
    } else if flask {
        Some(Framework::Flask)
    } else {
        None
    };
    // A Django profile reaches its driver through the ORM: the driver's frames are not a
    // choice to call it directly.
    if stack.framework == Some(Framework::Django) && stack.orm == Some(Orm::Driver) {
        stack.orm = Some(Orm::Django);
    }
    stack
}

/// What the table says of one frame, worked out once per distinct frame.
struct FrameInfo {
    origin: Origin,
    /// Its category by module and name.
    by_name: Option<Category>,
    /// Its category by its line's text (application frames).
    by_source: Option<Category>,
    /// A sort key's lambda.
    lambda: bool,
    /// Waiting for work, as a leaf.
    waits: bool,
    /// An event loop running callbacks.
    event_loop: bool,
}

fn frame_infos(profile: &Profile) -> Vec<FrameInfo> {
    profile
        .frames
        .iter()
        .map(|frame| {
            let origin = origin(frame);
            FrameInfo {
                origin,
                by_name: category_by_name(frame),
                by_source: (origin == Origin::Application)
                    .then(|| frame.source.as_deref().and_then(category_by_source))
                    .flatten(),
                lambda: frame.function.ends_with("<lambda>"),
                waits: waits(Some(frame)),
                event_loop: is_loop_frame(frame),
            }
        })
        .collect()
}

impl<'a> ProfileView<'a> {
    /// The profile read for the detectors; `cpu_cores` is the CPU a ramp's sampler measured for
    /// the process over the profile's time, when one ran beside it.
    pub(crate) fn new(profile: &'a Profile, cpu_cores: Option<f64>) -> ProfileView<'a> {
        let infos = frame_infos(profile);
        let loop_threads: Vec<u32> = {
            let mut threads: Vec<u32> = profile
                .stacks
                .iter()
                .filter(|s| s.frames.iter().any(|&f| infos[f as usize].event_loop))
                .map(|s| s.thread)
                .collect();
            threads.sort_unstable();
            threads.dedup();
            threads
        };
        let mut view = ProfileView {
            profile,
            busy: 0,
            total: 0,
            categories: HashMap::new(),
            callers: HashMap::new(),
            category_frames: HashMap::new(),
            app_self: HashMap::new(),
            app_inclusive: HashMap::new(),
            app_uncategorized: HashMap::new(),
            loop_samples: 0,
            loop_blocked: HashMap::new(),
            loop_idle: 0,
            loop_opaque: HashMap::new(),
            stack: stack_of(profile),
            cpu_cores,
            waiting_in_calls: 0,
            calling: 0,
            infos: Vec::new(),
        };
        for stack in &profile.stacks {
            view.total += stack.count;
            let on_loop = loop_threads.binary_search(&stack.thread).is_ok();
            if on_loop {
                view.loop_samples += stack.count;
            }
            if stack.frames.last().is_none_or(|&f| infos[f as usize].waits) {
                if on_loop {
                    view.loop_idle += stack.count;
                }
                continue;
            }
            view.busy += stack.count;
            let classified = classify(profile, &infos, stack);
            let waits_in_call = classified
                .as_ref()
                .is_some_and(|found| blocks(profile, stack, found));
            if waits_in_call || socket_leaf(profile, stack) {
                view.calling += stack.count;
            }
            let app_leaf = stack
                .frames
                .iter()
                .rev()
                .copied()
                .find(|&f| infos[f as usize].origin == Origin::Application);
            if let Some(app) = app_leaf {
                *view.app_self.entry(app).or_default() += stack.count;
            }
            let mut seen = Vec::new();
            for &f in &stack.frames {
                if infos[f as usize].origin == Origin::Application && !seen.contains(&f) {
                    seen.push(f);
                    *view.app_inclusive.entry(f).or_default() += stack.count;
                }
            }
            let Some(found) = classified else {
                if let Some(app) = app_leaf {
                    *view.app_uncategorized.entry(app).or_default() += stack.count;
                    let leaf_is_app = stack.frames.last() == Some(&app);
                    if on_loop && leaf_is_app {
                        *view.loop_opaque.entry(app).or_default() += stack.count;
                    }
                }
                continue;
            };
            let add = |tally: &mut Tally| {
                tally.count += stack.count;
                if found.inferred {
                    tally.inferred += stack.count;
                }
            };
            add(view.categories.entry(found.category).or_default());
            add(view.callers.entry((found.category, found.caller)).or_default());
            add(view
                .category_frames
                .entry((found.category, found.frame))
                .or_default());
            if waits_in_call {
                view.waiting_in_calls += stack.count;
            }
            if on_loop && waits_in_call {
                add(view
                    .loop_blocked
                    .entry((found.category, found.caller))
                    .or_default());
            }
        }
        view.infos = infos;
        view
    }

    /// The busy stacks (a thread doing something, not waiting for work).
    pub(crate) fn busy_stacks(&self) -> impl Iterator<Item = &'a Stack> + '_ {
        self.profile.stacks.iter().filter(|stack| {
            stack
                .frames
                .last()
                .is_some_and(|&f| !self.infos[f as usize].waits)
        })
    }

    /// Whether a busy stack waits in a call out of the process — a driver's socket read, an HTTP
    /// call, a sleep, file I/O, an event loop's own socket reads and writes — rather than
    /// running: a thread takes the GIL back there, after the call, so a GIL-bound process's
    /// waiting shows on such stacks.
    pub(crate) fn calls_out(&self, stack: &Stack) -> bool {
        calls_out(self.profile, &self.infos, stack)
    }

    /// Whether a frame is the application's own code.
    pub(crate) fn is_application(&self, frame: u32) -> bool {
        self.infos
            .get(frame as usize)
            .is_some_and(|info| info.origin == Origin::Application)
    }

    /// An event-loop thread held on one line of the application: the line (its frame) and its
    /// samples, when one leaf line in no category holds [`LOOP_HELD_SHARE`] of the loop's samples,
    /// the loop reaches its selector in fewer than [`LOOP_IDLE_SHARE`] of them, and the process's
    /// CPU, when a ramp measured it, stayed under half a core. A call there blocks the loop — one
    /// the sampler cannot see into (`time.sleep`, a socket read, a C library).
    pub(crate) fn loop_held_on_one_line(&self) -> Option<(u32, u64)> {
        let loop_samples = self.loop_samples;
        if loop_samples == 0 || self.loop_idle as f64 > LOOP_IDLE_SHARE * loop_samples as f64 {
            return None;
        }
        if self.cpu_cores.is_some_and(|cores| cores >= 0.5) {
            return None;
        }
        let (&line, &count) = self
            .loop_opaque
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
        (count as f64 >= LOOP_HELD_SHARE * loop_samples as f64 && self.enough(count)).then_some((line, count))
    }

    /// Whether the ramp's sampler measured the process under [`WAITING_CPU_SHARE`] of the cores
    /// it can use over the profile's seconds: its busy samples waited, and are no CPU.
    pub(crate) fn waited(&self) -> bool {
        self.cpu_cores
            .is_some_and(|cores| cores < WAITING_CPU_SHARE * crate::load::usable_cores(cores))
    }

    /// The share of the busy samples that ran on a CPU, when a sampler measured the process's
    /// CPU over the profile: busy thread-seconds above the cores it used were threads waiting —
    /// in a C call the sampler cannot see into (a driver's socket read, a lock, a sleep) or for
    /// the GIL. `None` without a measurement.
    pub(crate) fn on_cpu_share(&self) -> Option<f64> {
        let cores = self.cpu_cores?;
        let busy_threads = self.busy as f64 * self.seconds_per_count() / self.wall_s().max(1e-9);
        (busy_threads > 0.0).then(|| (cores / busy_threads).min(1.0))
    }

    /// The share of the CPU the process used over the profile that `samples` busy samples took,
    /// `calling` of them waiting in calls out of it ([`Self::calls_out`]). Busy samples above the
    /// cores it used waited — in calls, or for the GIL — and the samples cannot say where: taken
    /// alike, the share is the samples' share of the busy ones; taken as all in the calls (a
    /// thread takes the GIL back after its call), the samples that run code are on a CPU (scaled
    /// down only when they alone exceed the cores used) and the calls' samples share what is
    /// left. The two readings bound the share, and it is taken midway. Without a measured CPU, or
    /// with little waiting, the samples' share of the busy ones.
    pub(crate) fn cpu_share(&self, samples: u64, calling: u64) -> CpuShare {
        let plain = samples as f64 / self.busy.max(1) as f64;
        let alike = CpuShare {
            share: plain,
            range: [plain, plain],
            how: None,
        };
        let Some(cores) = self.cpu_cores.filter(|c| *c > 0.0) else {
            return alike;
        };
        let Some(on_cpu) = self.on_cpu_share().filter(|s| *s < 0.9) else {
            return alike;
        };
        let threads_per_sample = self.seconds_per_count() / self.wall_s().max(1e-9);
        let running = (self.busy - self.calling) as f64 * threads_per_sample;
        let in_calls = self.calling as f64 * threads_per_sample;
        let running_cpu = running.min(cores);
        let calls_cpu = if in_calls > 0.0 { cores - running_cpu } else { 0.0 };
        let cpu = (samples - calling) as f64 * threads_per_sample * (running_cpu / running.max(1e-9))
            + calling as f64 * threads_per_sample * (calls_cpu / in_calls.max(1e-9));
        let in_the_calls = (cpu / cores).clamp(0.0, 1.0);
        let range = [plain.min(in_the_calls), plain.max(in_the_calls)];
        CpuShare {
            share: (range[0] + range[1]) / 2.0,
            range,
            how: Some(format!(
                "the process used {cores:.2} cores while its threads were busy {:.1} per second ({:.0} % of the busy \
                 samples on a CPU), the samples cannot say where the rest waited: {:.0} % of the CPU with the waiting \
                 taken alike, {:.0} % with it all in the calls ({in_calls:.2} threads in calls out of the process, \
                 {running:.2} running code), taken midway",
                running + in_calls,
                on_cpu * 100.0,
                plain * 100.0,
                in_the_calls * 100.0,
            )),
        }
    }

    /// Seconds one count stands for.
    pub(crate) fn seconds_per_count(&self) -> f64 {
        self.profile.seconds_per_count()
    }

    /// The profile's wall-clock seconds.
    pub(crate) fn wall_s(&self) -> f64 {
        self.profile.wall_s()
    }

    /// A category's share of the busy samples.
    pub(crate) fn share(&self, category: Category) -> f64 {
        let count = self.categories.get(&category).map_or(0, |t| t.count);
        count as f64 / self.busy.max(1) as f64
    }

    /// The frame at an index.
    pub(crate) fn frame(&self, index: u32) -> &'a Frame {
        &self.profile.frames[index as usize]
    }

    /// A category's callers, the busiest first.
    pub(crate) fn callers_of(&self, category: Category) -> Vec<(Option<u32>, &Tally)> {
        let mut callers: Vec<_> = self
            .callers
            .iter()
            .filter(|((c, _), _)| *c == category)
            .map(|((_, caller), tally)| (*caller, tally))
            .collect();
        callers.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        callers
    }

    /// The frames that showed a category, the busiest first.
    pub(crate) fn frames_of(&self, category: Category) -> Vec<(u32, &Tally)> {
        let mut frames: Vec<_> = self
            .category_frames
            .iter()
            .filter(|((c, _), _)| *c == category)
            .map(|((_, frame), tally)| (*frame, tally))
            .collect();
        frames.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        frames
    }

    /// Enough to judge a share: 20 samples, or 20 ms measured.
    pub(crate) fn enough(&self, count: u64) -> bool {
        if self.profile.sampled {
            count >= 20
        } else {
            count as f64 * self.seconds_per_count() >= 0.02
        }
    }
}

/// The category of a stack: its leaf-most frame with one, by name, or by the line an
/// application frame (or a sort key's lambda) runs.
fn classify(profile: &Profile, infos: &[FrameInfo], stack: &Stack) -> Option<Classified> {
    let frames = &stack.frames;
    let info = |f: u32| &infos[f as usize];
    let app = |f: u32| info(f).origin == Origin::Application;
    // A `<lambda>` called on its caller's own line is a key function a builtin calls — `sorted`,
    // `list.sort`, `min`, `max` — which a sampler does not see: its line's text says so, or,
    // without the source, its place does.
    let key_lambda = |depth: usize| {
        let f = frames[depth];
        info(f).lambda
            && (info(f).by_source == Some(Category::Sorting)
                || (info(f).by_source.is_none()
                    && depth > 0
                    && same_place(
                        &profile.frames[frames[depth - 1] as usize],
                        &profile.frames[f as usize],
                    )))
    };
    for (depth, &f) in frames.iter().enumerate().rev() {
        let leaf = depth + 1 == frames.len();
        let (category, inferred) = match (info(f).by_name, info(f).by_source) {
            (Some(category), _) => (category, false),
            (None, Some(category)) if leaf => (category, true),
            _ if key_lambda(depth) => (Category::Sorting, true),
            _ => continue,
        };
        // Only the application's own file I/O counts, and only at the leaf.
        if category == Category::FileIo && !leaf {
            continue;
        }
        // A query an ORM's lazy loader emits is the lazy load's.
        if category == Category::Database
            && let Some(lazy) = frames[..depth]
                .iter()
                .rposition(|&f| info(f).by_name == Some(Category::LazyLoad))
        {
            return Some(Classified {
                category: Category::LazyLoad,
                frame: frames[lazy],
                caller: frames[..=lazy].iter().rev().copied().find(|&c| app(c)),
                inferred: false,
            });
        }
        // The ORM's attribute reads inside a sort key (`key=lambda e: e.score`) are the sort's.
        let (category, depth, inferred) = match (0..depth).rev().find(|&d| key_lambda(d)) {
            Some(key) if category == Category::Database => (Category::Sorting, key, true),
            _ => (category, depth, inferred),
        };
        let f = frames[depth];
        let above = &frames[..=depth];
        let caller = above
            .iter()
            .rev()
            .copied()
            .find(|&c| app(c) && !info(c).lambda)
            .or_else(|| above.iter().rev().copied().find(|&c| app(c)));
        return Some(Classified {
            category,
            frame: f,
            caller,
            inferred,
        });
    }
    None
}

/// Whether two frames stand on the same line of the same file.
fn same_place(a: &Frame, b: &Frame) -> bool {
    a.line > 0 && a.line == b.line && a.file == b.file
}

/// Whether a busy stack of an event-loop thread is blocked in a call rather than computing:
/// sleeping, file I/O, or a synchronous client waiting on its socket.
/// Samples' share of the CPU a process used ([`ProfileView::cpu_share`]).
#[derive(Clone, Debug)]
pub(crate) struct CpuShare {
    /// Midway between the bounds (0–1).
    pub(crate) share: f64,
    /// The bounds: the waiting taken alike, and all in the calls.
    pub(crate) range: [f64; 2],
    /// How it was split, when the process waited.
    pub(crate) how: Option<String>,
}

/// [`ProfileView::calls_out`].
fn calls_out(profile: &Profile, infos: &[FrameInfo], stack: &Stack) -> bool {
    classify(profile, infos, stack).is_some_and(|found| blocks(profile, stack, &found))
        || socket_leaf(profile, stack)
}

/// Whether a stack's leaf is a socket call: a server's or a client's send and receive, by its
/// module or its name, an event loop's own reads and writes.
fn socket_leaf(profile: &Profile, stack: &Stack) -> bool {
    const SOCKET_CALLS: [&str; 7] = [
        "send",
        "sendall",
        "recv",
        "recv_into",
        "readinto",
        "accept",
        "connect",
    ];
    profile.frames_of(stack).last().is_some_and(|leaf| {
        let (module, _) = module_path(&leaf.file);
        let name = leaf.function.rsplit('.').next().unwrap_or(&leaf.function);
        matches!(module, "socket.py" | "ssl.py" | "selectors.py")
            || SOCKET_CALLS.contains(&name)
            || (module.starts_with("asyncio/")
                && ["send", "recv", "write", "read", "accept"]
                    .iter()
                    .any(|verb| leaf.function.contains(verb)))
    })
}

fn blocks(profile: &Profile, stack: &Stack, found: &Classified) -> bool {
    match found.category {
        Category::Sleep | Category::FileIo => true,
        // Told from the line that calls a C driver: the thread waits in it.
        Category::HttpClient | Category::Database if found.inferred => true,
        Category::HttpClient | Category::Database => profile.frames_of(stack).last().is_some_and(|leaf| {
            let (module, _) = module_path(&leaf.file);
            matches!(module, "socket.py" | "ssl.py" | "selectors.py")
                || module.starts_with("http/client")
                || module.starts_with("urllib3/")
                || module.starts_with("psycopg2/")
                || is_database_instrumentation(module)
                || leaf.function.contains("recv")
                || leaf.function.contains("connect")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Frame {
        Frame::parse(text)
    }

    #[test]
    fn origins_from_full_and_shortened_paths() {
        assert_eq!(origin(&frame("dumps (json/__init__.py:231)")), Origin::Stdlib);
        assert_eq!(
            origin(&frame("dumps (/usr/lib/python3.11/json/__init__.py:231)")),
            Origin::Stdlib
        );
        assert_eq!(
            origin(&frame(
                "f (/srv/.venv/lib/python3.11/site-packages/starlette/routing.py:1)"
            )),
            Origin::Library
        );
        assert_eq!(origin(&frame("f (starlette/routing.py:1)")), Origin::Library);
        assert_eq!(origin(&frame("handler (app.py:12)")), Origin::Application);
        assert_eq!(
            origin(&frame("handler (/srv/service/app.py:12)")),
            Origin::Application
        );
        assert_eq!(
            origin(&frame("<built-in method builtins.sorted>")),
            Origin::Native
        );
    }

    #[test]
    fn categories_by_frame_and_by_line() {
        assert_eq!(
            category_by_name(&frame("JSONEncoder.iterencode (json/encoder.py:258)")),
            Some(Category::Serialization)
        );
        assert_eq!(
            category_by_name(&frame("_compile (re/__init__.py:294)")),
            Some(Category::RegexCompile)
        );
        assert_eq!(
            category_by_name(&frame("match (re/__init__.py:166)")),
            None,
            "matching is not compiling"
        );
        assert_eq!(
            category_by_name(&frame("FsyncHandler.emit (app.py:330)")),
            Some(Category::Logging)
        );
        assert_eq!(
            category_by_name(&frame("nlargest (heapq.py:545)")),
            Some(Category::Sorting)
        );
        assert_eq!(
            category_by_name(&frame(
                "LazyLoader._load_for_state (sqlalchemy/orm/strategies.py:900)"
            )),
            Some(Category::LazyLoad)
        );
        assert_eq!(
            category_by_source("top = sorted(events, key=lambda e: e.score)[:20]"),
            Some(Category::Sorting)
        );
        assert_eq!(category_by_source("time.sleep(0.02)"), Some(Category::Sleep));
        assert_eq!(category_by_source("return {\"sum\": n * n}"), None);
    }

    #[test]
    fn waiting_is_not_busy() {
        assert!(waits(Some(&frame("EpollSelector.select (selectors.py:468)"))));
        assert!(waits(Some(&frame("Condition.wait (threading.py:327)"))));
        assert!(waits(None));
        assert!(!waits(Some(&frame("handler (app.py:12)"))));
    }
}

/// A category that takes a large share of the busy time, with the code that calls it.
pub(crate) struct Hot<'a> {
    pub(crate) view: &'a ProfileView<'a>,
    pub(crate) category: Category,
    /// Busy samples (or µs) in it.
    pub(crate) count: u64,
    /// Its share of the busy samples.
    pub(crate) share: f64,
    /// Its busy seconds.
    pub(crate) seconds: f64,
    /// The application code that calls it most, when there is one.
    pub(crate) caller: Option<&'a Frame>,
    /// The frame that shows the category under that caller most.
    pub(crate) frame: &'a Frame,
    /// Whether most of it was told from source lines.
    pub(crate) inferred: bool,
    /// The share of the busy time in the database fetch that feeds it (in-memory sorts).
    pub(crate) fetch_share: f64,
}

impl<'a> ProfileView<'a> {
    /// `category` when it takes at least `min_share` of the busy time, on enough samples.
    pub(crate) fn hot(&'a self, category: Category, min_share: f64) -> Option<Hot<'a>> {
        let tally = self.categories.get(&category)?;
        let share = self.share(category);
        if share < min_share || !self.enough(tally.count) {
            return None;
        }
        let (caller, _) = *self.callers_of(category).first()?;
        let (frame, _) = *self.frames_of(category).first()?;
        Some(Hot {
            view: self,
            category,
            count: tally.count,
            share,
            seconds: tally.count as f64 * self.seconds_per_count(),
            caller: caller.map(|c| self.frame(c)),
            frame: self.frame(frame),
            inferred: tally.inferred * 2 > tally.count,
            fetch_share: 0.0,
        })
    }

    /// A hot-frame evidence item.
    pub(crate) fn item(&self, frame: u32, tally: &Tally) -> EvidenceItem {
        let frame_ref = self.frame(frame);
        EvidenceItem::HotFrame {
            function: frame_ref.function.clone(),
            file: frame_ref.file.clone(),
            line: frame_ref.line,
            source: frame_ref.source.clone(),
            share_of_busy: crate::impact::round(tally.count as f64 / self.busy.max(1) as f64),
            seconds: crate::impact::round(tally.count as f64 * self.seconds_per_count()),
            inferred_from_source: tally.inferred * 2 > tally.count,
        }
    }
}

/// A frame as a code subject and its words.
pub(crate) fn code_subject(frame: &Frame) -> (Subject, String) {
    (
        Subject::Code {
            file: frame.file.clone(),
            line: (frame.line > 0).then_some(frame.line),
            function: frame.function.clone(),
        },
        frame.to_string(),
    )
}

impl Hot<'_> {
    /// Where: the calling code, else the frame itself.
    pub(crate) fn place(&self) -> &Frame {
        self.caller.unwrap_or(self.frame)
    }

    /// "`handler (app.py:12)`: `return sorted(…)`".
    pub(crate) fn place_text(&self) -> String {
        let place = self.place();
        match &place.source {
            Some(source) => format!("{place}: `{}`", crate::detectors::clip(source, 80)),
            None => place.to_string(),
        }
    }

    /// The conclusion: `saved_share` of the category's time is what the fix gives back.
    pub(crate) fn conclude(
        &self,
        resource: Resource,
        basis: Basis,
        saved_share: f64,
        title: String,
        fix: String,
    ) -> Conclusion {
        let view = self.view;
        // Frames worth reading: at least 2 % of the busy time.
        let worth = |tally: &Tally| tally.count as f64 >= 0.02 * view.busy as f64;
        let mut items: Vec<EvidenceItem> = view
            .callers_of(self.category)
            .into_iter()
            .filter(|(_, tally)| worth(tally))
            .filter_map(|(caller, tally)| caller.map(|c| view.item(c, tally)))
            .take(3)
            .collect();
        for (f, tally) in view
            .frames_of(self.category)
            .into_iter()
            .filter(|(_, t)| worth(t))
            .take(3)
        {
            let item = view.item(f, tally);
            if !items.contains(&item) {
                items.push(item);
            }
        }
        let (subject, location) = code_subject(self.place());
        let confidence = if self.share >= 0.4 && !self.inferred {
            Confidence::High
        } else {
            Confidence::Medium
        };
        let mut assumptions = vec![if view.profile.sampled {
            format!(
                "busy = samples of threads not waiting for work, every thread counted ({} of {} at {:.0} per second): \
                 a request's time, including waits for the GIL",
                view.busy, view.total, view.profile.rate_hz
            )
        } else {
            format!(
                "busy = measured time ({:.2} s); a deterministic profiler slows Python code, so shares are approximate",
                view.busy as f64 * view.seconds_per_count()
            )
        }];
        if self.inferred && self.place().source.is_none() && self.category == Category::Sorting {
            assumptions.push(
                "sorting was told from a `<lambda>` called on its caller's own line — a sort or min/max key; the builtin \
                 that calls it is invisible to a sampler (with `--source` the line itself would say)"
                    .into(),
            );
        } else if self.inferred {
            assumptions.push(format!(
                "{} was told from the source line (a sampler sees Python frames only)",
                self.category.describe()
            ));
        }
        let mut conclusion = Conclusion::new(
            resource,
            basis,
            Estimate::Profile {
                saved_s: self.seconds * saved_share,
                share: self.share * saved_share,
                affected: self.count,
                busy: view.busy,
            },
            title,
            fix,
            confidence,
        )
        .assume(assumptions)
        .metrics(vec![
            ("share_of_busy", self.share),
            ("seconds", self.seconds),
            ("busy_s", view.busy as f64 * view.seconds_per_count()),
            ("profile_s", view.wall_s()),
        ])
        .about(subject, location);
        conclusion.items = items;
        conclusion
    }
}

/// What a profile shows, per category and per hot frame: the report's profile section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileSummary {
    /// The format it was read as.
    pub format: String,
    /// Whether it was sampled (else measured time).
    pub sampled: bool,
    /// Samples per second, for a sampled profile.
    pub rate_hz: f64,
    /// Seconds it covers.
    pub wall_s: f64,
    /// Seconds of threads doing something (not waiting for work), all threads together.
    pub busy_s: f64,
    /// Busy time per category, the largest first.
    pub categories: Vec<CategoryShare>,
    /// The application's hottest functions by busy time of their own, with their inclusive time.
    pub hot_frames: Vec<HotFrameShare>,
}

/// One category's busy time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CategoryShare {
    /// `serialization`, `logging`, `regex compilation`, `sorting`, …
    pub category: String,
    /// Seconds.
    pub seconds: f64,
    /// Share of the busy time (0–1).
    pub share_of_busy: f64,
    /// Share of it told from source lines rather than frames (0–1).
    pub inferred_share: f64,
}

/// One application function's busy time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HotFrameShare {
    /// `function (file:line)`.
    pub frame: String,
    /// The line's text, when the source was at hand.
    pub source: Option<String>,
    /// Share of the busy time in it, itself (0–1).
    pub self_share: f64,
    /// Share of the busy time in it and what it calls (0–1).
    pub inclusive_share: f64,
}

/// The profile's summary, when there is a profile.
pub(crate) fn summary(view: &ProfileView<'_>) -> ProfileSummary {
    let busy = view.busy.max(1) as f64;
    let round = crate::impact::round;
    let mut categories: Vec<CategoryShare> = view
        .categories
        .iter()
        .map(|(category, tally)| CategoryShare {
            category: category.describe().to_owned(),
            seconds: round(tally.count as f64 * view.seconds_per_count()),
            share_of_busy: round(tally.count as f64 / busy),
            inferred_share: round(tally.inferred as f64 / tally.count.max(1) as f64),
        })
        .collect();
    categories.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.category.cmp(&b.category)));
    let mut own: Vec<(u32, u64)> = view.app_self.iter().map(|(f, c)| (*f, *c)).collect();
    own.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let hot_frames = own
        .into_iter()
        .take(10)
        .map(|(f, count)| {
            let frame = view.frame(f);
            HotFrameShare {
                frame: frame.to_string(),
                source: frame.source.clone(),
                self_share: round(count as f64 / busy),
                inclusive_share: round(view.app_inclusive.get(&f).copied().unwrap_or(count) as f64 / busy),
            }
        })
        .collect();
    ProfileSummary {
        format: view.profile.format.clone(),
        sampled: view.profile.sampled,
        rate_hz: view.profile.rate_hz,
        wall_s: round(view.wall_s()),
        busy_s: round(view.busy as f64 * view.seconds_per_count()),
        categories,
        hot_frames,
    }
}

/// A profile ready to draw: folded stacks (`thread;frame;… count`, frames written
/// `function (file:line)`) and the category of each frame that has one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlameInput {
    /// Folded lines, root first.
    pub lines: Vec<String>,
    /// Frame label → category (`serialization`, `logging`, …).
    pub categories: std::collections::BTreeMap<String, &'static str>,
}

/// The profile as a flame graph's input, categories decided here, where the table is.
pub fn flame_input(profile: &Profile) -> FlameInput {
    let labels: Vec<String> = profile
        .frames
        .iter()
        .map(|f| f.to_string().replace(';', ":"))
        .collect();
    let categories = frame_infos(profile)
        .iter()
        .zip(&labels)
        .filter_map(|(info, label)| {
            let category = info.by_name.or(info.by_source)?;
            Some((label.clone(), category.describe()))
        })
        .collect();
    let lines = profile
        .stacks
        .iter()
        .filter(|s| s.count > 0)
        .map(|stack| {
            let thread = profile
                .threads
                .get(stack.thread as usize)
                .map_or("thread", String::as_str)
                .replace(';', ":");
            let mut line = thread;
            for &f in &stack.frames {
                line.push(';');
                line.push_str(&labels[f as usize]);
            }
            line.push(' ');
            line.push_str(&stack.count.to_string());
            line
        })
        .collect();
    FlameInput { lines, categories }
}
