//! What the rules need to know beyond one line: a module's imports and names, its handlers and
//! what they call, and — across the whole tree — the ORM relations the models declare and the
//! routes `urls.py` gives Django views.

use std::collections::{HashMap, HashSet};

use crate::python::{Class, Def, Expr, Stmt};

/// A relation an ORM model declares: reading it from an instance runs a query.
#[derive(Clone, Debug)]
pub(crate) struct Relation {
    /// The model it is read on.
    pub(crate) model: String,
    /// `django` or `sqlalchemy`.
    pub(crate) orm: Orm,
    /// Whether it holds many (a reverse foreign key, a many-to-many, a list relationship): Django
    /// prefetches those, and selects the others in the same query.
    pub(crate) many: bool,
    /// Whether the mapping loads it eagerly already (`lazy="selectin"`, `"joined"`).
    pub(crate) eager: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Orm {
    Django,
    SqlAlchemy,
}

/// What is known across every file scanned.
#[derive(Default)]
pub(crate) struct Tree {
    /// Relations by attribute name.
    pub(crate) relations: HashMap<String, Vec<Relation>>,
    /// Model class names (any ORM).
    pub(crate) models: HashSet<String>,
    /// Routes of Django views by the view's name (`books_bad`, `BookList`).
    pub(crate) django_routes: HashMap<String, Vec<String>>,
}

impl Tree {
    /// Learns the models and routes one module declares.
    pub(crate) fn learn(&mut self, module: &ModuleFacts, body: &[Stmt]) {
        for stmt in body {
            match stmt {
                Stmt::Class(class) => self.learn_class(module, class),
                Stmt::Assign {
                    value: Some(value), ..
                }
                | Stmt::Expr(value) => self.learn_urls(value),
                _ => {}
            }
        }
    }

    fn learn_class(&mut self, module: &ModuleFacts, class: &Class) {
        let django = class
            .bases
            .iter()
            .filter_map(dotted)
            .any(|b| module.resolve(&b) == "django.db.models.Model" || b.ends_with("Model"));
        let mut is_model = false;
        for stmt in &class.body {
            let Stmt::Assign {
                targets,
                value: Some(Expr::Call {
                    func, args, keywords, ..
                }),
                ..
            } = stmt
            else {
                continue;
            };
            let Some(Expr::Name { id: attr, .. }) = targets.first() else {
                continue;
            };
            let Some(called) = dotted(func) else { continue };
            let called = module.resolve(&called);
            let kind = called.rsplit('.').next().unwrap_or_default();
            let keyword = |name: &str| {
                keywords
                    .iter()
                    .find(|(k, _)| k.as_deref() == Some(name))
                    .and_then(|(_, v)| string(v))
            };
            match kind {
                "ForeignKey" | "OneToOneField" | "ManyToManyField"
                    if django || called.starts_with("django") =>
                {
                    is_model = true;
                    let many = kind == "ManyToManyField";
                    self.add(attr, &class.name, Orm::Django, many, false);
                    let target = args.first().and_then(|a| string(a).or_else(|| dotted(a)));
                    let target = target.map(|t| t.rsplit('.').next().unwrap_or_default().to_owned());
                    if let Some(target) = target {
                        let reverse = keyword("related_name")
                            .unwrap_or_else(|| format!("{}_set", class.name.to_lowercase()));
                        if reverse != "+" {
                            self.add(&reverse, &target, Orm::Django, kind != "OneToOneField", false);
                        }
                    }
                }
                "relationship" => {
                    is_model = true;
                    let lazy = keyword("lazy").unwrap_or_else(|| "select".to_owned());
                    let eager = matches!(lazy.as_str(), "selectin" | "joined" | "subquery" | "immediate");
                    let many = keyword("uselist").is_none();
                    self.add(attr, &class.name, Orm::SqlAlchemy, many, eager);
                    if let Some(backref) = keyword("backref") {
                        let target = args.first().and_then(|a| string(a).or_else(|| dotted(a)));
                        if let Some(target) = target {
                            self.add(&backref, &target, Orm::SqlAlchemy, true, false);
                        }
                    }
                }
                "CharField" | "TextField" | "IntegerField" | "mapped_column" | "Column" => is_model = true,
                _ => {}
            }
        }
        if is_model || django {
            self.models.insert(class.name.clone());
        }
    }

    fn add(&mut self, attr: &str, model: &str, orm: Orm, many: bool, eager: bool) {
        self.relations.entry(attr.to_owned()).or_default().push(Relation {
            model: model.to_owned(),
            orm,
            many,
            eager,
        });
    }

    /// `path("books/", views.books)` and `re_path(…)`, wherever they are written.
    fn learn_urls(&mut self, value: &Expr) {
        visit(value, &mut |e| {
            let Expr::Call { func, args, .. } = e else { return };
            let Some(name) = dotted(func) else { return };
            if !matches!(name.rsplit('.').next(), Some("path" | "re_path" | "url")) {
                return;
            }
            let (Some(route), Some(view)) = (args.first().and_then(string), args.get(1)) else {
                return;
            };
            let view = match view {
                Expr::Call { func, .. } => match func.as_ref() {
                    Expr::Attribute { value, attr, .. } if attr == "as_view" => dotted(value),
                    _ => None,
                },
                other => dotted(other),
            };
            if let Some(view) = view {
                let view = view.rsplit('.').next().unwrap_or_default().to_owned();
                let route = format!(
                    "/{}",
                    route
                        .trim_start_matches('^')
                        .trim_end_matches('$')
                        .trim_start_matches('/')
                );
                self.django_routes.entry(view).or_default().push(route);
            }
        });
    }
}

/// A route a handler serves.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub(crate) method: Option<String>,
    pub(crate) path: String,
}

/// A request handler declared in a module.
#[derive(Clone, Debug)]
pub(crate) struct HandlerDecl {
    pub(crate) framework: &'static str,
    pub(crate) routes: Vec<Route>,
}

/// What is known of one module.
#[derive(Default)]
pub(crate) struct ModuleFacts {
    /// Local name → what it imports (`r` → `requests`, `sleep` → `time.sleep`).
    pub(crate) imports: HashMap<String, String>,
    /// Names bound at module level, with the value bound.
    pub(crate) globals: HashMap<String, usize>,
    /// Module-level names bound to an HTTP client or an engine made once.
    pub(crate) clients: HashMap<String, ClientKind>,
    /// Functions defined at module level (and methods, as `Class.method`) that are `async`.
    pub(crate) async_functions: HashSet<String>,
    /// Handlers by function name (`Class.method` for a method).
    pub(crate) handlers: HashMap<String, HandlerDecl>,
    /// Functions a handler reaches, by name, with the handler that reaches them.
    pub(crate) reached: HashMap<String, String>,
    /// Whether the file is a Django views module (`views.py`, `views/…`).
    pub(crate) django_views: bool,
}

/// What a module-level name holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientKind {
    /// An HTTP client whose calls are awaited.
    AsyncHttp,
    /// An HTTP client whose calls block.
    SyncHttp,
    /// An engine that opens a connection per session (`poolclass=NullPool`).
    UnpooledEngine,
}

impl ModuleFacts {
    /// Reads a module's imports, names, handlers and the functions they call.
    pub(crate) fn of(body: &[Stmt], path: &str) -> ModuleFacts {
        let mut facts = ModuleFacts {
            django_views: path.ends_with("views.py") || path.contains("/views/"),
            ..ModuleFacts::default()
        };
        facts.read_imports(body);
        for (i, stmt) in body.iter().enumerate() {
            match stmt {
                Stmt::Assign { targets, value, .. } => {
                    for target in targets {
                        if let Expr::Name { id, .. } = target {
                            facts.globals.insert(id.clone(), i);
                            if let Some(kind) = value.as_ref().and_then(|v| facts.client_kind(v)) {
                                facts.clients.insert(id.clone(), kind);
                            }
                        }
                    }
                }
                Stmt::Def(def) if def.is_async => {
                    facts.async_functions.insert(def.name.clone());
                }
                Stmt::Class(class) => {
                    for s in &class.body {
                        if let Stmt::Def(def) = s
                            && def.is_async
                        {
                            facts.async_functions.insert(def.name.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        let mut calls: HashMap<String, HashSet<String>> = HashMap::new();
        for stmt in body {
            match stmt {
                Stmt::Def(def) => {
                    if let Some(handler) = facts.handler_of(def, None) {
                        facts.handlers.insert(def.name.clone(), handler);
                    }
                    calls.insert(def.name.clone(), called_names(&def.body));
                }
                Stmt::Class(class) => {
                    let view = class.bases.iter().filter_map(dotted).any(|b| {
                        let b = b.rsplit('.').next().unwrap_or_default();
                        b.ends_with("View")
                            || b.ends_with("ViewSet")
                            || b.ends_with("APIView")
                            || b == "HTTPEndpoint"
                    });
                    for s in &class.body {
                        let Stmt::Def(def) = s else { continue };
                        let name = format!("{}.{}", class.name, def.name);
                        let handler = facts.handler_of(def, Some(view));
                        if let Some(handler) = handler {
                            facts.handlers.insert(name.clone(), handler);
                        }
                        calls.insert(name, called_names(&def.body));
                    }
                }
                _ => {}
            }
        }
        // What each handler reaches in the module, breadth first, the handler named.
        for handler in facts.handlers.keys() {
            let class = handler.split_once('.').map(|(c, _)| c);
            let mut queue = vec![handler.clone()];
            while let Some(function) = queue.pop() {
                for callee in calls.get(&function).into_iter().flatten() {
                    let candidates = [Some(callee.clone()), class.map(|c| format!("{c}.{callee}"))];
                    for candidate in candidates.into_iter().flatten() {
                        if calls.contains_key(&candidate)
                            && !facts.handlers.contains_key(&candidate)
                            && !facts.reached.contains_key(&candidate)
                        {
                            facts.reached.insert(candidate.clone(), handler.clone());
                            queue.push(candidate);
                        }
                    }
                }
            }
        }
        facts
    }

    fn read_imports(&mut self, body: &[Stmt]) {
        for stmt in body {
            match stmt {
                Stmt::Import(names) => {
                    for alias in names {
                        match &alias.asname {
                            Some(asname) => self.imports.insert(asname.clone(), alias.name.clone()),
                            None => {
                                let first = alias.name.split('.').next().unwrap_or_default().to_owned();
                                self.imports.insert(first.clone(), first)
                            }
                        };
                    }
                }
                Stmt::ImportFrom { module, names } => {
                    for alias in names {
                        let local = alias.asname.clone().unwrap_or_else(|| alias.name.clone());
                        self.imports.insert(local, format!("{module}.{}", alias.name));
                    }
                }
                // Imports under `if`/`try` at module level count too.
                Stmt::Other { bodies, .. } => {
                    for body in bodies {
                        self.read_imports(body);
                    }
                }
                _ => {}
            }
        }
    }

    /// A dotted name with its first part replaced by what it imports.
    pub(crate) fn resolve(&self, name: &str) -> String {
        let (first, rest) = name.split_once('.').map_or((name, None), |(a, b)| (a, Some(b)));
        match (self.imports.get(first), rest) {
            (Some(full), Some(rest)) => format!("{full}.{rest}"),
            (Some(full), None) => full.clone(),
            (None, _) => name.to_owned(),
        }
    }

    /// What a value makes, when it makes a client or an engine.
    pub(crate) fn client_kind(&self, value: &Expr) -> Option<ClientKind> {
        let Expr::Call { func, keywords, .. } = value else {
            return None;
        };
        let called = self.resolve(&dotted(func)?);
        match called.as_str() {
            "httpx.AsyncClient" | "aiohttp.ClientSession" => Some(ClientKind::AsyncHttp),
            "httpx.Client" | "requests.Session" | "requests.session" => Some(ClientKind::SyncHttp),
            "sqlalchemy.create_engine" | "sqlalchemy.ext.asyncio.create_async_engine" => keywords
                .iter()
                .any(|(k, v)| {
                    k.as_deref() == Some("poolclass")
                        && dotted(v).is_some_and(|p| p.rsplit('.').next() == Some("NullPool"))
                })
                .then_some(ClientKind::UnpooledEngine),
            _ => None,
        }
    }

    fn handler_of(&self, def: &Def, view_class: Option<bool>) -> Option<HandlerDecl> {
        let mut routes = Vec::new();
        let mut framework = None;
        for decorator in &def.decorators {
            let Expr::Call {
                func, args, keywords, ..
            } = decorator
            else {
                continue;
            };
            let Expr::Attribute { attr, .. } = func.as_ref() else {
                continue;
            };
            let method = match attr.as_str() {
                "get" | "post" | "put" | "patch" | "delete" | "head" | "options" => Some(attr.to_uppercase()),
                "route" | "api_route" | "websocket" => None,
                _ => continue,
            };
            let Some(path) = args.first().and_then(string) else {
                continue;
            };
            let methods: Vec<String> = keywords
                .iter()
                .find(|(k, _)| k.as_deref() == Some("methods"))
                .map(|(_, v)| {
                    let mut found = Vec::new();
                    visit(v, &mut |e| found.extend(string(e)));
                    found
                })
                .unwrap_or_default();
            let flask = self
                .imports
                .values()
                .any(|m| m == "flask" || m.starts_with("flask."));
            framework = Some(if flask {
                "flask"
            } else if self.imports.values().any(|m| m.starts_with("starlette"))
                && !self.imports.values().any(|m| m.starts_with("fastapi"))
            {
                "starlette"
            } else {
                "fastapi"
            });
            if methods.is_empty() {
                routes.push(Route {
                    method: method.clone(),
                    path: path.clone(),
                });
            }
            for m in methods {
                routes.push(Route {
                    method: Some(m.to_uppercase()),
                    path: path.clone(),
                });
            }
        }
        if let Some(framework) = framework {
            return Some(HandlerDecl { framework, routes });
        }
        match view_class {
            // A method of a class-based view that answers an HTTP method or a DRF action.
            Some(true) => matches!(
                def.name.as_str(),
                "get"
                    | "post"
                    | "put"
                    | "patch"
                    | "delete"
                    | "list"
                    | "retrieve"
                    | "create"
                    | "update"
                    | "partial_update"
                    | "destroy"
                    | "get_queryset"
                    | "get_object"
                    | "get_context_data"
            )
            .then(|| HandlerDecl {
                framework: "django",
                routes: Vec::new(),
            }),
            Some(false) => None,
            // A Django function view: in a views module, its first parameter the request.
            None => (self.django_views && def.params.first().is_some_and(|p| p == "request")).then(|| {
                HandlerDecl {
                    framework: "django",
                    routes: Vec::new(),
                }
            }),
        }
    }
}

/// The names a body calls: `f(…)` and `self.f(…)`.
fn called_names(body: &[Stmt]) -> HashSet<String> {
    let mut names = HashSet::new();
    each_expr(body, &mut |e| {
        if let Expr::Call { func, .. } = e {
            match func.as_ref() {
                Expr::Name { id, .. } => {
                    names.insert(id.clone());
                }
                Expr::Attribute { value, attr, .. } if matches!(value.as_ref(), Expr::Name { id, .. } if id == "self" || id == "cls") =>
                {
                    names.insert(attr.clone());
                }
                _ => {}
            }
        }
    });
    names
}

/// Every expression of a body, nested ones included (function bodies inside it too).
pub(crate) fn each_expr<'a>(body: &'a [Stmt], f: &mut impl FnMut(&'a Expr)) {
    for stmt in body {
        match stmt {
            Stmt::Import(_) | Stmt::ImportFrom { .. } => {}
            Stmt::Def(def) => {
                def.decorators.iter().for_each(|e| visit(e, f));
                each_expr(&def.body, f);
            }
            Stmt::Class(class) => each_expr(&class.body, f),
            Stmt::For {
                target,
                iter,
                body,
                other,
                ..
            } => {
                visit(target, f);
                visit(iter, f);
                each_expr(body, f);
                each_expr(other, f);
            }
            Stmt::While { test, body, other } => {
                visit(test, f);
                each_expr(body, f);
                each_expr(other, f);
            }
            Stmt::Assign { targets, value, .. } => {
                targets.iter().for_each(|e| visit(e, f));
                value.iter().for_each(|e| visit(e, f));
            }
            Stmt::Return { value, .. } => value.iter().for_each(|e| visit(e, f)),
            Stmt::With { items, body } => {
                for (e, v) in items {
                    visit(e, f);
                    v.iter().for_each(|e| visit(e, f));
                }
                each_expr(body, f);
            }
            Stmt::Expr(e) => visit(e, f),
            Stmt::Other { exprs, bodies } => {
                exprs.iter().for_each(|e| visit(e, f));
                bodies.iter().for_each(|b| each_expr(b, f));
            }
        }
    }
}

/// An expression and every expression inside it, outermost first.
pub(crate) fn visit<'a>(e: &'a Expr, f: &mut impl FnMut(&'a Expr)) {
    f(e);
    match e {
        Expr::Name { .. } | Expr::Str { .. } | Expr::Slice { .. } => {}
        Expr::Attribute { value, .. } | Expr::Await { value, .. } => visit(value, f),
        Expr::Call {
            func, args, keywords, ..
        } => {
            visit(func, f);
            args.iter().for_each(|a| visit(a, f));
            keywords.iter().for_each(|(_, v)| visit(v, f));
        }
        Expr::Formatted { parts: children, .. } | Expr::Other { children, .. } => {
            children.iter().for_each(|c| visit(c, f))
        }
        Expr::Comprehension {
            elements, generators, ..
        } => {
            elements.iter().for_each(|c| visit(c, f));
            for g in generators {
                visit(&g.target, f);
                visit(&g.iter, f);
                g.conditions.iter().for_each(|c| visit(c, f));
            }
        }
        Expr::Subscript { value, slice, .. } => {
            visit(value, f);
            visit(slice, f);
        }
        Expr::Lambda { body, .. } => visit(body, f),
    }
}

/// `a.b.c` for a name or an attribute chain.
pub(crate) fn dotted(e: &Expr) -> Option<String> {
    match e {
        Expr::Name { id, .. } => Some(id.clone()),
        Expr::Attribute { value, attr, .. } => Some(format!("{}.{attr}", dotted(value)?)),
        _ => None,
    }
}

/// A string literal's value.
pub(crate) fn string(e: &Expr) -> Option<String> {
    match e {
        Expr::Str { value, .. } => Some(value.clone()),
        _ => None,
    }
}
