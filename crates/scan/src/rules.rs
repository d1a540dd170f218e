//! The rules: each a detector id's shape in Python source, found by walking a module's functions
//! with what is known of the module and the tree.

use std::collections::{HashMap, HashSet};

use chokepoint_evidence::{Certainty, DetectorId};

use crate::facts::{ClientKind, ModuleFacts, Orm, Tree, dotted, each_expr, string, visit};
use crate::python::{Def, Expr, Module, Offset, Stmt};

/// One shape found, before its line and column are worked out.
pub(crate) struct Found {
    pub(crate) detector: DetectorId,
    pub(crate) at: Offset,
    pub(crate) function: String,
    pub(crate) what: String,
    pub(crate) fix: String,
    pub(crate) certainty: Certainty,
    pub(crate) statement: Option<String>,
}

/// Calls that run a statement on a database.
const STATEMENT_CALLS: &[&str] = &["execute", "fetch", "fetchrow", "fetchval", "scalar", "scalars"];
/// Calls that bound what a query returns.
const BOUNDING: &[&str] = &[
    "limit",
    "first",
    "one",
    "one_or_none",
    "get",
    "scalar",
    "count",
    "exists",
    "aggregate",
    "paginate",
    "fetchone",
    "fetchmany",
    "slice",
    "in_bulk",
    "get_or_none",
    "latest",
    "earliest",
    "where",
    "filter",
    "filter_by",
    "exclude",
    "fetch",
];
/// Options that load a relation with its rows.
const EAGER: &[&str] = &[
    "select_related",
    "prefetch_related",
    "selectinload",
    "joinedload",
    "subqueryload",
    "contains_eager",
    "immediateload",
    "Prefetch",
];
/// Queryset methods that run a statement.
const DJANGO_RUNS: &[&str] = &[
    "get",
    "count",
    "exists",
    "first",
    "last",
    "create",
    "update",
    "delete",
    "aggregate",
    "get_or_create",
    "update_or_create",
    "in_bulk",
    "earliest",
    "latest",
];
/// Names a database connection, cursor or session goes by.
const DATABASE_HANDLES: &[&str] = &[
    "cursor",
    "cur",
    "c",
    "conn",
    "connection",
    "session",
    "db",
    "s",
    "tx",
    "transaction",
    "db_session",
];
const HTTP_VERBS: &[&str] = &[
    "get", "post", "put", "patch", "delete", "head", "options", "request", "send", "stream",
];
const REGEX_FUNCTIONS: &[&str] = &[
    "compile",
    "match",
    "search",
    "fullmatch",
    "findall",
    "finditer",
    "sub",
    "subn",
    "split",
];
/// Functions whose body runs once, at start-up, not per request.
const ONCE: &[&str] = &[
    "__init__",
    "lifespan",
    "startup",
    "on_startup",
    "create_app",
    "main",
    "setup",
    "ready",
    "get_engine",
];

/// Runs every rule over a module.
pub(crate) fn check(module: &Module, facts: &ModuleFacts, tree: &Tree, text: &str) -> Vec<Found> {
    let mut checker = Checker {
        facts,
        tree,
        text,
        found: Vec::new(),
    };
    for stmt in &module.body {
        match stmt {
            Stmt::Def(def) => checker.function(def, def.name.clone()),
            Stmt::Class(class) => {
                checker.logging_handler(class);
                for s in &class.body {
                    if let Stmt::Def(def) = s {
                        checker.function(def, format!("{}.{}", class.name, def.name));
                    }
                }
            }
            _ => {}
        }
    }
    let mut seen = HashSet::new();
    checker.found.retain(|f| seen.insert((f.detector, f.at)));
    checker.found
}

struct Checker<'a> {
    facts: &'a ModuleFacts,
    tree: &'a Tree,
    text: &'a str,
    found: Vec<Found>,
}

/// Where the walk is: the function, whether it runs on an event loop, its local names, the loops
/// around the expression.
struct Place<'a> {
    function: String,
    is_async: bool,
    per_request: bool,
    locals: HashMap<&'a str, Vec<&'a Expr>>,
    loops: Vec<Loop<'a>>,
    /// Starts of call chains already judged as a whole (their inner links are not chains of their own).
    chains: HashSet<Offset>,
    /// Starts of chains that are sliced (`[:20]`).
    sliced: HashSet<Offset>,
    /// Starts of expressions read whole where they are: iterated, or handed to `len`, `list`, a
    /// response.
    consumed: HashSet<Offset>,
}

impl Place<'_> {
    fn new(function: String, is_async: bool, per_request: bool) -> Self {
        Place {
            function,
            is_async,
            per_request,
            locals: HashMap::new(),
            loops: Vec::new(),
            chains: HashSet::new(),
            sliced: HashSet::new(),
            consumed: HashSet::new(),
        }
    }
}

struct Loop<'a> {
    targets: Vec<&'a str>,
    iter: &'a Expr,
    /// Over a literal of a few items: a loop, not an N+1.
    few: bool,
}

/// What the words of an expression, its local names followed, say.
#[derive(Default)]
struct Words {
    calls: HashSet<String>,
    attrs: HashSet<String>,
    names: HashSet<String>,
    strings: Vec<String>,
}

impl Words {
    fn is_query(&self) -> bool {
        self.attrs.contains("objects")
            || ["scalars", "execute", "query", "fetchall", "fetch"]
                .iter()
                .any(|c| self.calls.contains(*c))
    }
    fn bounded(&self) -> bool {
        BOUNDING.iter().any(|b| self.calls.contains(*b))
    }
}

impl<'a> Checker<'a> {
    fn function(&mut self, def: &'a Def, name: String) {
        let bare = name.rsplit('.').next().unwrap_or_default().to_owned();
        let per_request = self.facts.handlers.contains_key(&name) || self.facts.reached.contains_key(&name);
        let mut place = Place::new(name, def.is_async, per_request && !ONCE.contains(&bare.as_str()));
        bind_locals(&def.body, &mut place.locals);
        self.block(&def.body, &mut place);
    }

    fn block(&mut self, body: &'a [Stmt], place: &mut Place<'a>) {
        if place.is_async {
            self.sequential(body, place);
        }
        for stmt in body {
            match stmt {
                Stmt::Import(_) | Stmt::ImportFrom { .. } | Stmt::Class(_) => {}
                Stmt::Def(def) => {
                    // A function defined inside runs when called, maybe elsewhere: its own place.
                    let mut inner = Place::new(
                        format!("{}.{}", place.function, def.name),
                        def.is_async,
                        place.per_request,
                    );
                    bind_locals(&def.body, &mut inner.locals);
                    self.block(&def.body, &mut inner);
                }
                Stmt::For {
                    target,
                    iter,
                    body,
                    other,
                    ..
                } => {
                    self.expr(iter, place);
                    place.loops.push(Loop {
                        targets: names_of(target),
                        iter,
                        few: few_items(iter),
                    });
                    self.block(body, place);
                    place.loops.pop();
                    self.block(other, place);
                }
                Stmt::While { test, body, other } => {
                    self.expr(test, place);
                    self.block(body, place);
                    self.block(other, place);
                }
                Stmt::Assign { targets, value, .. } => {
                    for target in targets {
                        // `row.author = x` writes the relation: no query.
                        match target {
                            Expr::Attribute { value, .. } => self.expr(value, place),
                            other => self.expr(other, place),
                        }
                    }
                    value.iter().for_each(|v| self.expr(v, place));
                }
                Stmt::Return { value, .. } => value.iter().for_each(|v| self.expr(v, place)),
                Stmt::With { items, body } => {
                    for (e, _) in items {
                        self.expr(e, place);
                    }
                    self.block(body, place);
                }
                Stmt::Expr(e) => self.expr(e, place),
                Stmt::Other { exprs, bodies } => {
                    exprs.iter().for_each(|e| self.expr(e, place));
                    bodies.iter().for_each(|b| self.block(b, place));
                }
            }
        }
    }

    fn expr(&mut self, e: &'a Expr, place: &mut Place<'a>) {
        match e {
            Expr::Comprehension {
                elements, generators, ..
            } => {
                let depth = place.loops.len();
                for g in generators {
                    place.consumed.insert(g.iter.at());
                    self.expr(&g.iter, place);
                    place.loops.push(Loop {
                        targets: names_of(&g.target),
                        iter: &g.iter,
                        few: few_items(&g.iter),
                    });
                    g.conditions.iter().for_each(|c| self.expr(c, place));
                }
                elements.iter().for_each(|el| self.expr(el, place));
                place.loops.truncate(depth);
                return;
            }
            Expr::Lambda { body, .. } => {
                // Its body runs where it is called (a thread, a sort's key), not on the loop here.
                let was_async = std::mem::replace(&mut place.is_async, false);
                let loops = std::mem::take(&mut place.loops);
                self.expr(body, place);
                place.loops = loops;
                place.is_async = was_async;
                return;
            }
            Expr::Subscript { value, slice, at } => {
                if matches!(slice.as_ref(), Expr::Slice { .. }) {
                    place.sliced.insert(*at);
                }
                let _ = value;
            }
            Expr::Attribute { value, attr, at } => self.relation_read(value, attr, *at, place),
            Expr::Call { .. } => self.call(e, place),
            _ => {}
        }
        match e {
            Expr::Name { .. }
            | Expr::Str { .. }
            | Expr::Slice { .. }
            | Expr::Lambda { .. }
            | Expr::Comprehension { .. } => {}
            Expr::Attribute { value, .. } | Expr::Await { value, .. } => self.expr(value, place),
            Expr::Call {
                func, args, keywords, ..
            } => {
                self.expr(func, place);
                args.iter().for_each(|a| self.expr(a, place));
                keywords.iter().for_each(|(_, v)| self.expr(v, place));
            }
            Expr::Formatted { parts: children, .. } | Expr::Other { children, .. } => {
                children.iter().for_each(|c| self.expr(c, place))
            }
            Expr::Subscript { value, slice, .. } => {
                self.expr(value, place);
                self.expr(slice, place);
            }
        }
    }

    fn push(
        &mut self,
        place: &Place<'_>,
        detector: DetectorId,
        at: Offset,
        certainty: Certainty,
        what: String,
        fix: String,
    ) {
        self.found.push(Found {
            detector,
            at,
            function: place.function.clone(),
            what,
            fix,
            certainty,
            statement: None,
        });
    }

    /// The words of an expression, local names followed a few times.
    fn words(&self, e: &Expr, place: &Place<'_>) -> Words {
        let mut words = Words::default();
        let mut seen = HashSet::new();
        collect_words(e, place, 0, &mut words, &mut seen);
        words
    }

    fn call(&mut self, e: &'a Expr, place: &mut Place<'a>) {
        let Expr::Call {
            func,
            args,
            keywords,
            at,
            end,
        } = e
        else {
            return;
        };
        let name = dotted(func);
        let resolved = name.as_deref().map(|n| self.facts.resolve(n));
        let method = match func.as_ref() {
            Expr::Attribute { attr, .. } => Some(attr.as_str()),
            _ => None,
        };
        let receiver = match func.as_ref() {
            Expr::Attribute { value, .. } => dotted(value),
            _ => None,
        };
        let in_loop = place.loops.last().is_some_and(|l| !l.few);
        // A chain (`X.objects.filter(…).count()`) is judged once, at its outermost call: its
        // inner links start where it starts.
        let outermost = place.chains.insert(*at);
        let fastapi = self.facts.imports.values().any(|m| m.starts_with("fastapi"));

        if matches!(
            resolved.as_deref(),
            Some(
                "len"
                    | "list"
                    | "tuple"
                    | "set"
                    | "sorted"
                    | "sum"
                    | "django.http.JsonResponse"
                    | "JsonResponse"
            )
        ) {
            place.consumed.extend(args.iter().map(Expr::at));
        }

        // blocking-call: a call that blocks, inside `async def`.
        if place.is_async
            && let Some((call, fix)) = resolved
                .as_deref()
                .and_then(|r| self.blocking(r, receiver.as_deref(), place))
        {
            let fix = if fastapi {
                format!("{fix}; or declare the route with `def`, which FastAPI runs in its thread pool")
            } else {
                fix
            };
            self.push(
                place,
                DetectorId::BlockingCall,
                *at,
                Certainty::High,
                format!("`{call}` blocks the event loop inside `async def`"),
                fix,
            );
        }

        // n-plus-one: a statement, or an HTTP call, per item of a loop.
        if in_loop && place.function.rsplit('.').next() != Some("<module>") {
            let sql = args.first().and_then(sql_text);
            let statement = method.is_some_and(|m| STATEMENT_CALLS.contains(&m))
                && (sql.is_some()
                    || receiver
                        .as_deref()
                        .is_some_and(|r| self.database_handle(r, place)));
            // A Django queryset runs only when something reads it: a loop that builds querysets
            // (`pages |= Page.objects.filter(…)`) runs none.
            let django = outermost && {
                // `model.objects…` over a variable model reads another table each time round (one
                // query per model is the batched form); a class name (`Book.objects…`) does not.
                let (methods, manager) = method_chain(e);
                manager.is_some_and(|m| {
                    m.rsplit('.')
                        .next()
                        .is_some_and(|c| c.starts_with(char::is_uppercase))
                }) && methods.iter().any(|m| DJANGO_RUNS.contains(m))
            };
            let session_get = method == Some("get")
                && args
                    .first()
                    .and_then(dotted)
                    .is_some_and(|m| self.tree.models.contains(&m))
                && receiver.is_some();
            if statement || django || session_get {
                let fix = match (&sql, django, session_get) {
                    (Some(sql), _, _) if sql.trim_start().to_uppercase().starts_with("SELECT") => format!(
                        "one statement for all the items: `{}` with the list of keys, the rows grouped in Python",
                        batched(sql)
                    ),
                    (Some(_), _, _) => {
                        "one statement for all the items: `executemany`, or `psycopg2.extras.execute_values`"
                            .to_owned()
                    }
                    (None, true, _) => format!(
                        "one query for all the items: `{}.filter(pk__in=keys)` (or `in_bulk(keys)`) before the loop",
                        receiver.clone().unwrap_or_default()
                    ),
                    (None, _, true) => format!(
                        "one query for all the items: `session.scalars(select({0}).where({0}.id.in_(keys)))` before the loop",
                        args.first().and_then(dotted).unwrap_or_default()
                    ),
                    _ => "one statement for all the items, before the loop".to_owned(),
                };
                let call = name
                    .clone()
                    .unwrap_or_else(|| method.unwrap_or_default().to_owned());
                self.found.push(Found {
                    detector: DetectorId::NPlusOne,
                    at: *at,
                    function: place.function.clone(),
                    what: format!("`{call}` runs a statement once per item of the loop"),
                    fix,
                    certainty: Certainty::Medium,
                    statement: sql,
                });
            } else if let Some(verb) = method.filter(|m| HTTP_VERBS.contains(m))
                && self.http_client(receiver.as_deref(), place).is_some()
            {
                let call = name.clone().unwrap_or_default();
                self.push(
                    place,
                    DetectorId::NPlusOne,
                    *at,
                    Certainty::Medium,
                    format!("`{call}` makes one HTTP call per item of the loop"),
                    format!(
                        "one call for all the items, when the service has a batch endpoint (`{verb}(\"…\", params={{\"ids\": …}})`); \
                         else `asyncio.gather(*({call}(…) for item in items))` with a bound on how many run at once"
                    ),
                );
            }
        }

        if !place.per_request {
            // What follows costs per request: in a script or at start-up it is paid once.
            if resolved.as_deref() == Some("sorted") || method == Some("sort") {
                // A sort in a script is no request's cost.
            }
            return;
        }

        // connection-churn: a client, an engine or a connection made per request.
        let made = resolved.as_deref().and_then(|r| match r {
            "httpx.AsyncClient" | "httpx.Client" | "requests.Session" | "aiohttp.ClientSession" => {
                Some("an HTTP client (a new connection pool)")
            }
            "sqlalchemy.create_engine" | "sqlalchemy.ext.asyncio.create_async_engine" => {
                Some("an engine (a new connection pool)")
            }
            "psycopg2.connect"
            | "psycopg.connect"
            | "asyncpg.connect"
            | "pymysql.connect"
            | "MySQLdb.connect"
            | "sqlite3.connect"
            | "psycopg.AsyncConnection.connect" => Some("a database connection"),
            "redis.Redis" | "redis.from_url" | "redis.asyncio.Redis" | "pymongo.MongoClient" => {
                Some("a client (a new connection)")
            }
            _ => None,
        });
        let unpooled = args
            .first()
            .and_then(dotted)
            .or_else(|| receiver.clone())
            .filter(|n| self.facts.clients.get(n) == Some(&ClientKind::UnpooledEngine));
        if let Some(made) = made {
            let call = name.clone().unwrap_or_default();
            let fix = if made.starts_with("an HTTP") {
                format!(
                    "make one `{call}(…)` at start-up (module level or the app's lifespan) and reuse it in every request"
                )
            } else if made.starts_with("a database") {
                "take connections from a pool made once at start-up (`psycopg2.pool.ThreadedConnectionPool`, `psycopg_pool.ConnectionPool`, `asyncpg.create_pool`)".to_owned()
            } else {
                format!("make one `{call}(…)` at start-up and reuse it")
            };
            self.push(
                place,
                DetectorId::ConnectionChurn,
                *at,
                Certainty::High,
                format!("`{call}` makes {made} on every request"),
                fix,
            );
        } else if let Some(engine) = unpooled {
            self.push(
                place,
                DetectorId::ConnectionChurn,
                *at,
                Certainty::High,
                format!("`{engine}` has no pool (`poolclass=NullPool`): every session opens a new database connection"),
                format!("a pooled engine: `create_engine(url, pool_size=…, max_overflow=…)` without `poolclass=NullPool`, in place of `{engine}`"),
            );
        }

        // regex-per-request: a pattern built per call and compiled.
        if let Some(r) = resolved.as_deref()
            && let Some(function) = r.strip_prefix("re.").filter(|f| REGEX_FUNCTIONS.contains(f))
            && let Some(pattern) = args.first().or_else(|| {
                keywords
                    .iter()
                    .find(|(k, _)| k.as_deref() == Some("pattern"))
                    .map(|(_, v)| v)
            })
            && self.dynamic(pattern, place)
        {
            self.push(
                place,
                DetectorId::RegexPerRequest,
                *at,
                if place.loops.is_empty() { Certainty::Medium } else { Certainty::High },
                format!("`re.{function}` compiles a pattern built on every call (re's cache holds 512)"),
                "compile one pattern once, at module level (`PATTERN = re.compile(r\"…(\\d+)…\")`), with the varying part \
                 matched as a group and compared after; or cache the compiled patterns (`functools.lru_cache`)"
                    .to_owned(),
            );
        }

        // in-memory-sort: a query's rows sorted in Python.
        let sorted_rows = if resolved.as_deref() == Some("sorted") {
            args.first()
        } else if method == Some("sort") {
            match func.as_ref() {
                Expr::Attribute { value, .. } => Some(value.as_ref()),
                _ => None,
            }
        } else {
            None
        };
        if let Some(rows) = sorted_rows {
            let words = self.words(rows, place);
            if words.is_query() && !words.calls.contains("limit") && !self.is_sliced(rows, place) {
                let key = keywords
                    .iter()
                    .find(|(k, _)| k.as_deref() == Some("key"))
                    .and_then(|(_, v)| match v {
                        Expr::Lambda { body, .. } => match body.as_ref() {
                            Expr::Attribute { attr, .. } => Some(attr.clone()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .unwrap_or_else(|| "…".to_owned());
                let descending = keywords.iter().any(|(k, v)| {
                    k.as_deref() == Some("reverse")
                        && matches!(v, Expr::Other { .. } | Expr::Name { .. })
                        && self.source(v.at()).starts_with("True")
                });
                let sliced_after = self
                    .text
                    .get(*end as usize..)
                    .is_some_and(|rest| rest.starts_with("[:"));
                let take = if sliced_after {
                    self.text[*end as usize + 2..]
                        .split(']')
                        .next()
                        .unwrap_or("n")
                        .trim()
                        .to_owned()
                } else {
                    "n".to_owned()
                };
                let fix = if words.attrs.contains("objects") {
                    format!(
                        "let the database sort and cut: `.order_by(\"{}{key}\")[:{take}]`, with an index on `{key}`",
                        if descending { "-" } else { "" }
                    )
                } else {
                    let model = self.model_of(&words).unwrap_or_else(|| "Model".to_owned());
                    format!(
                        "let the database sort and cut: `select({model}).order_by({model}.{key}{}).limit({take})`, with an index on `{key}`",
                        if descending { ".desc()" } else { "" }
                    )
                };
                self.push(
                    place,
                    DetectorId::InMemorySort,
                    *at,
                    Certainty::Medium,
                    "every row of a query is fetched to be sorted in Python".to_owned(),
                    fix,
                );
            }
        }

        // unbounded-result: every row of a table returned to a request.
        if outermost {
            let terminal = method == Some("all");
            let sql = if method.is_some_and(|m| m == "execute") {
                args.first().and_then(sql_text)
            } else {
                None
            };
            if terminal && !place.sliced.contains(at) {
                let words = self.words(e, place);
                // A Django queryset is lazy: one assigned or returned may be paged later; one read
                // at once (iterated, `len`, `list`, a response) is not.
                let lazy_and_kept = words.attrs.contains("objects") && !place.consumed.contains(at);
                if words.is_query() && !words.bounded() && !self.is_sliced(e, place) && !lazy_and_kept {
                    let fix = if words.attrs.contains("objects") {
                        "a page: `.order_by(\"id\")[:100]` (or `Paginator`); `.count()` or `.exists()` when only that is used".to_owned()
                    } else {
                        let model = self.model_of(&words).unwrap_or_else(|| "Model".to_owned());
                        format!(
                            "a page: `select({model}).where({model}.id > after).order_by({model}.id).limit(100)`; \
                             `select(func.count()).select_from({model})` when only the count is used"
                        )
                    };
                    self.push(
                        place,
                        DetectorId::UnboundedResult,
                        *at,
                        Certainty::Medium,
                        "a query returns every row of its table to the request".to_owned(),
                        fix,
                    );
                }
            } else if let Some(sql) = sql {
                let upper = sql.to_uppercase();
                let aggregate = ["COUNT(", "SUM(", "MAX(", "MIN(", "AVG(", "EXISTS"]
                    .iter()
                    .any(|a| upper.contains(a));
                if upper.trim_start().starts_with("SELECT")
                    && upper.contains(" FROM ")
                    && !upper.contains("WHERE")
                    && !upper.contains("LIMIT")
                    && !upper.contains("FETCH FIRST")
                    && !aggregate
                {
                    self.found.push(Found {
                        detector: DetectorId::UnboundedResult,
                        at: *at,
                        function: place.function.clone(),
                        what: "a statement with neither `WHERE` nor `LIMIT` returns every row of its table to the request".to_owned(),
                        fix: "a page: `… WHERE id > %s ORDER BY id LIMIT 100` (keyset pagination)".to_owned(),
                        certainty: Certainty::Medium,
                        statement: Some(sql),
                    });
                }
            }
        }
    }

    /// Whether a blocking call: the call, and its non-blocking form.
    fn blocking(
        &self,
        resolved: &str,
        receiver: Option<&str>,
        place: &Place<'_>,
    ) -> Option<(String, String)> {
        let module = resolved.split('.').next().unwrap_or_default();
        let last = resolved.rsplit('.').next().unwrap_or_default();
        let fix = match resolved {
            "time.sleep" => "`await asyncio.sleep(…)`".to_owned(),
            "open"
                if !self.facts.globals.contains_key("open") && !self.facts.imports.contains_key("open") =>
            {
                "read the file off the loop: `await asyncio.to_thread(read_file, path)` (or `aiofiles`)"
                    .to_owned()
            }
            "urllib.request.urlopen" => {
                "`await client.get(…)` on an `httpx.AsyncClient` created once at start-up".to_owned()
            }
            "os.system"
            | "os.popen"
            | "subprocess.run"
            | "subprocess.call"
            | "subprocess.check_call"
            | "subprocess.check_output"
            | "subprocess.getoutput" => "`await asyncio.create_subprocess_exec(…)`".to_owned(),
            "psycopg2.connect" | "psycopg.connect" | "pymysql.connect" | "sqlite3.connect" => {
                "an async driver (`asyncpg`, `psycopg.AsyncConnection`) from a pool made at start-up"
                    .to_owned()
            }
            _ if (module == "requests" || module == "httpx")
                && HTTP_VERBS.contains(&last)
                && resolved.matches('.').count() == 1 =>
            {
                "`await client.get(…)` on an `httpx.AsyncClient` created once at start-up".to_owned()
            }
            _ if HTTP_VERBS.contains(&last)
                && self.http_client(receiver, place) == Some(ClientKind::SyncHttp) =>
            {
                "`await client.get(…)` on an `httpx.AsyncClient` created once at start-up".to_owned()
            }
            _ => return None,
        };
        Some((resolved.to_owned(), fix))
    }

    /// Whether a receiver is a database connection, cursor or session: by its name, or by what
    /// made it in the function (`conn.cursor()`, `Session(engine)`, `engine.connect()`).
    fn database_handle(&self, receiver: &str, place: &Place<'_>) -> bool {
        let last = receiver.rsplit('.').next().unwrap_or_default();
        DATABASE_HANDLES.contains(&last.trim_start_matches('_'))
            || place.locals.get(receiver).into_iter().flatten().any(|value| {
                let words = self.words(value, place);
                [
                    "cursor",
                    "connect",
                    "Session",
                    "begin",
                    "acquire",
                    "getconn",
                    "sessionmaker",
                ]
                .iter()
                .any(|c| words.calls.contains(*c))
            })
    }

    /// What a receiver is, when it is an HTTP client: a module's, or one made in the function.
    fn http_client(&self, receiver: Option<&str>, place: &Place<'_>) -> Option<ClientKind> {
        let receiver = receiver?;
        if let Some(kind) = self
            .facts
            .clients
            .get(receiver)
            .filter(|k| **k != ClientKind::UnpooledEngine)
        {
            return Some(*kind);
        }
        if matches!(receiver, "requests" | "httpx") {
            return Some(ClientKind::SyncHttp);
        }
        place
            .locals
            .get(receiver)
            .into_iter()
            .flatten()
            .find_map(|v| self.facts.client_kind(v))
            .filter(|k| *k != ClientKind::UnpooledEngine)
    }

    /// Whether a pattern is built when the code runs.
    fn dynamic(&self, pattern: &Expr, place: &Place<'_>) -> bool {
        match pattern {
            Expr::Formatted { parts, .. } => !parts.is_empty(),
            Expr::Call { func, .. } => {
                matches!(func.as_ref(), Expr::Attribute { attr, .. } if attr == "format" || attr == "join" || attr == "escape")
            }
            Expr::Other { children, .. } => children
                .iter()
                .any(|c| matches!(c, Expr::Str { .. } | Expr::Formatted { .. })),
            Expr::Name { id, .. } => place.locals.get(id.as_str()).is_some_and(|values| {
                values
                    .iter()
                    .any(|v| !matches!(v, Expr::Name { .. }) && self.dynamic(v, place))
            }),
            _ => false,
        }
    }

    fn is_sliced(&self, e: &Expr, place: &Place<'_>) -> bool {
        if place.sliced.contains(&e.at()) {
            return true;
        }
        match e {
            Expr::Name { id, .. } => place
                .locals
                .get(id.as_str())
                .is_some_and(|values| values.iter().any(|v| place.sliced.contains(&v.at()) || matches!(v, Expr::Subscript { slice, .. } if matches!(slice.as_ref(), Expr::Slice { .. })))),
            Expr::Subscript { slice, .. } => matches!(slice.as_ref(), Expr::Slice { .. }),
            _ => false,
        }
    }

    /// The model a query's words name: the first model among its names.
    fn model_of(&self, words: &Words) -> Option<String> {
        let mut models: Vec<&String> = words
            .names
            .iter()
            .filter(|n| self.tree.models.contains(*n))
            .collect();
        models.sort();
        models.first().map(|m| (*m).clone())
    }

    /// n-plus-one: a lazily loaded relation read on each row of a query.
    fn relation_read(&mut self, value: &Expr, attr: &str, at: Offset, place: &Place<'a>) {
        let Expr::Name { id, .. } = value else { return };
        let Some(relations) = self.tree.relations.get(attr) else {
            return;
        };
        let Some(lp) = place
            .loops
            .iter()
            .rev()
            .find(|l| l.targets.contains(&id.as_str()))
        else {
            return;
        };
        if lp.few {
            return;
        }
        let words = self.words(lp.iter, place);
        if !words.is_query() || words.calls.contains("values") || words.calls.contains("values_list") {
            return;
        }
        let model = self.model_of(&words);
        let candidates: Vec<_> = relations
            .iter()
            .filter(|r| model.as_ref().is_none_or(|m| &r.model == m))
            .collect();
        let Some(relation) = candidates.first() else {
            return;
        };
        if candidates.iter().any(|r| r.eager) {
            return;
        }
        let loaded = EAGER.iter().any(|e| words.calls.contains(*e))
            && (words.attrs.contains(attr)
                || words
                    .strings
                    .iter()
                    .any(|s| s == attr || s.starts_with(&format!("{attr}__"))));
        if loaded {
            return;
        }
        let model = model.unwrap_or_else(|| relation.model.clone());
        let fix = match (relation.orm, relation.many) {
            (Orm::Django, true) => {
                format!("load it with the rows: `.prefetch_related(\"{attr}\")` on the `{model}` query")
            }
            (Orm::Django, false) => {
                format!("load it with the rows: `.select_related(\"{attr}\")` on the `{model}` query")
            }
            (Orm::SqlAlchemy, true) => format!(
                "load it with the rows: `.options(selectinload({model}.{attr}))` on the `select({model})`"
            ),
            (Orm::SqlAlchemy, false) => format!(
                "load it with the rows: `.options(joinedload({model}.{attr}))` on the `select({model})`"
            ),
        };
        let _ = id;
        self.push(
            place,
            DetectorId::NPlusOne,
            at,
            Certainty::High,
            format!("`{model}.{attr}` is loaded lazily, one query per row of the loop"),
            fix,
        );
    }

    /// sequential-calls: independent awaited calls one after another.
    fn sequential(&mut self, body: &'a [Stmt], place: &Place<'a>) {
        let mut run: Vec<(&'a Expr, Vec<&'a str>)> = Vec::new();
        let flush = |run: &mut Vec<(&'a Expr, Vec<&'a str>)>, checker: &mut Self| {
            if run.len() >= 2 {
                let calls: Vec<String> = run.iter().map(|(call, _)| checker.call_text(call)).collect();
                checker.push(
                    place,
                    DetectorId::SequentialCalls,
                    run[0].0.at(),
                    Certainty::Medium,
                    format!("{} independent calls are awaited one after another", run.len()),
                    format!("run them together: `await asyncio.gather({})`", calls.join(", ")),
                );
            }
            run.clear();
        };
        for stmt in body {
            let (targets, value): (Vec<&'a str>, Option<&'a Expr>) = match stmt {
                Stmt::Assign { targets, value, .. } => {
                    (targets.iter().flat_map(names_of).collect(), value.as_ref())
                }
                Stmt::Expr(e) => (Vec::new(), Some(e)),
                _ => (Vec::new(), None),
            };
            let awaited = value.and_then(|v| self.awaited_call(v, place));
            match awaited {
                Some(call) => {
                    let mut uses = HashSet::new();
                    visit(call, &mut |x| {
                        if let Expr::Name { id, .. } = x {
                            uses.insert(id.as_str());
                        }
                    });
                    if run
                        .iter()
                        .any(|(_, bound)| bound.iter().any(|b| uses.contains(b)))
                    {
                        flush(&mut run, self);
                    }
                    run.push((call, targets));
                }
                None => flush(&mut run, self),
            }
        }
        flush(&mut run, self);
    }

    /// The one call a statement awaits, when it is an HTTP call or an async function of the module.
    fn awaited_call(&self, e: &'a Expr, place: &Place<'a>) -> Option<&'a Expr> {
        let mut awaits = Vec::new();
        visit(e, &mut |x| {
            if let Expr::Await { value, .. } = x {
                awaits.push(value.as_ref() as *const Expr);
            }
        });
        if awaits.len() != 1 {
            return None;
        }
        let mut found = None;
        visit(e, &mut |x| {
            if let Expr::Await { value, .. } = x {
                found = Some(value.as_ref());
            }
        });
        let call = found?;
        let Expr::Call { func, .. } = call else {
            return None;
        };
        let ok = match func.as_ref() {
            Expr::Name { id, .. } => self.facts.async_functions.contains(id),
            Expr::Attribute { value, attr, .. } => {
                (HTTP_VERBS.contains(&attr.as_str())
                    && self.http_client(dotted(value).as_deref(), place) == Some(ClientKind::AsyncHttp))
                    || (matches!(value.as_ref(), Expr::Name { id, .. } if id == "self")
                        && self.facts.async_functions.contains(attr))
            }
            _ => false,
        };
        ok.then_some(call)
    }

    fn call_text(&self, call: &Expr) -> String {
        match call {
            Expr::Call { at, end, .. } => self
                .text
                .get(*at as usize..*end as usize)
                .unwrap_or("…")
                .to_owned(),
            _ => "…".to_owned(),
        }
    }

    fn source(&self, at: Offset) -> &str {
        self.text.get(at as usize..).unwrap_or_default()
    }

    /// sync-logging: a logging handler that flushes or syncs the disk on every record.
    fn logging_handler(&mut self, class: &'a crate::python::Class) {
        let handler = class.bases.iter().filter_map(dotted).any(|b| {
            let b = self.facts.resolve(&b);
            b.starts_with("logging.") && b.ends_with("Handler")
        });
        if !handler {
            return;
        }
        for stmt in &class.body {
            let Stmt::Def(def) = stmt else { continue };
            if def.name != "emit" {
                continue;
            }
            let mut places = Vec::new();
            each_expr(&def.body, &mut |e| {
                if let Expr::Call { func, at, .. } = e {
                    let name = dotted(func).map(|n| self.facts.resolve(&n)).unwrap_or_default();
                    if name == "os.fsync" || name == "os.fdatasync" {
                        places.push((*at, "`os.fsync` waits for the disk on every record"));
                    } else if name.ends_with(".flush") {
                        places.push((*at, "`flush()` writes on every record"));
                    }
                }
            });
            let place = Place::new(format!("{}.emit", class.name), false, false);
            for (at, what) in places {
                self.push(
                    &place,
                    DetectorId::SyncLogging,
                    at,
                    Certainty::Low,
                    format!("{what} of `{}` (cheap when records are few: the cost is measured, not read here)", class.name),
                    "hand records to a `logging.handlers.QueueHandler` and write them from a `QueueListener` thread; leave flushing to the OS"
                        .to_owned(),
                );
            }
        }
    }
}

fn collect_words<'a>(
    e: &'a Expr,
    place: &Place<'a>,
    depth: u8,
    words: &mut Words,
    seen: &mut HashSet<&'a str>,
) {
    let mut names = Vec::new();
    visit(e, &mut |x| match x {
        Expr::Call { func, .. } => match func.as_ref() {
            Expr::Name { id, .. } => {
                words.calls.insert(id.clone());
            }
            Expr::Attribute { attr, .. } => {
                words.calls.insert(attr.clone());
            }
            _ => {}
        },
        Expr::Attribute { attr, .. } => {
            words.attrs.insert(attr.clone());
        }
        Expr::Name { id, .. } => {
            words.names.insert(id.clone());
            names.push(id.as_str());
        }
        Expr::Str { value, .. } => words.strings.push(value.clone()),
        _ => {}
    });
    if depth >= 3 {
        return;
    }
    for id in names {
        if seen.insert(id) {
            for value in place.locals.get(id).into_iter().flatten() {
                collect_words(value, place, depth + 1, words, seen);
            }
        }
    }
}

/// The methods a call chain calls, outermost first, and the model whose Django manager it
/// starts from (`Model` of `Model.objects…`).
fn method_chain(e: &Expr) -> (Vec<&str>, Option<String>) {
    let mut methods = Vec::new();
    let mut at = e;
    loop {
        match at {
            Expr::Call { func, .. } => match func.as_ref() {
                Expr::Attribute { value, attr, .. } => {
                    methods.push(attr.as_str());
                    at = value;
                }
                _ => return (methods, None),
            },
            Expr::Attribute { value, attr, .. } => {
                if attr == "objects" {
                    return (methods, dotted(value));
                }
                at = value;
            }
            Expr::Subscript { value, .. } => at = value,
            _ => return (methods, None),
        }
    }
}

/// The names a binding target binds.
fn names_of(target: &Expr) -> Vec<&str> {
    match target {
        Expr::Name { id, .. } => vec![id.as_str()],
        Expr::Other { children, .. } => children.iter().flat_map(names_of).collect(),
        _ => Vec::new(),
    }
}

/// The values bound to each local name of a body (nested functions aside).
fn bind_locals<'a>(body: &'a [Stmt], locals: &mut HashMap<&'a str, Vec<&'a Expr>>) {
    for stmt in body {
        match stmt {
            Stmt::Assign {
                targets,
                value: Some(value),
                ..
            } => {
                for target in targets {
                    for name in names_of(target) {
                        locals.entry(name).or_default().push(value);
                    }
                }
            }
            Stmt::With { items, body } => {
                for (e, var) in items {
                    if let Some(var) = var {
                        for name in names_of(var) {
                            locals.entry(name).or_default().push(e);
                        }
                    }
                }
                bind_locals(body, locals);
            }
            Stmt::For { body, other, .. } | Stmt::While { body, other, .. } => {
                bind_locals(body, locals);
                bind_locals(other, locals);
            }
            Stmt::Other { bodies, .. } => bodies.iter().for_each(|b| bind_locals(b, locals)),
            _ => {}
        }
    }
}

/// Whether a loop runs over a literal of a few items (`("a", "b", "c")`, `range(3)`).
fn few_items(iter: &Expr) -> bool {
    match iter {
        Expr::Other { children, .. } => {
            children.len() < 5
                && children
                    .iter()
                    .all(|c| matches!(c, Expr::Str { .. } | Expr::Other { .. }))
        }
        Expr::Call { func, args, .. } => {
            matches!(func.as_ref(), Expr::Name { id, .. } if id == "range")
                && args.len() == 1
                && matches!(&args[0], Expr::Other { children, .. } if children.is_empty())
        }
        _ => false,
    }
}

/// The SQL a call's argument writes: a literal, or `text("…")`.
fn sql_text(arg: &Expr) -> Option<String> {
    let text = match arg {
        Expr::Str { value, .. } => value.clone(),
        Expr::Call { func, args, .. }
            if dotted(func).is_some_and(|f| f == "text" || f.ends_with(".text")) =>
        {
            args.first().and_then(string)?
        }
        _ => return None,
    };
    let head = text.trim_start().get(..6)?.to_uppercase();
    matches!(
        head.as_str(),
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH C" | "WITH R"
    )
    .then_some(text)
}

/// A statement for one key made one for many: `= %s` as `= ANY(%s)`.
fn batched(sql: &str) -> String {
    for placeholder in ["= %s", "= $1", "= ?", "= :id"] {
        if let Some(i) = sql.find(placeholder) {
            let (head, tail) = sql.split_at(i);
            let value = &placeholder[2..];
            return format!("{head}= ANY({value}){}", &tail[placeholder.len()..]);
        }
    }
    sql.to_owned()
}
