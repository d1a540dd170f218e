//! What the service is built with — its web framework, its ORM or database driver, its server —
//! as the evidence shows it: the instrumentation scopes that recorded its spans
//! (`opentelemetry.instrumentation.django`), the packages in its profile's frames (read where the
//! frame table is: `profile::stack_of`), the command line of the process a ramp sampled; the
//! analysis puts them together (`analyse::stack_of`). Fixes speak these terms, and only when the evidence names
//! them: a Django service is told `select_related`, not SQLAlchemy's `selectinload`, and waitress
//! `threads=`, not Starlette's thread pool.

/// A web framework.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framework {
    Django,
    DjangoRest,
    Flask,
    FastApi,
    Spring,
    Rails,
    Express,
}

/// How the service reaches its database: an ORM, or a driver called directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Orm {
    SqlAlchemy,
    Django,
    Hibernate,
    ActiveRecord,
    /// A driver called with SQL text (psycopg2, psycopg, asyncpg, JDBC, node-postgres).
    Driver,
}

/// The server that runs a Python web service: what holds its workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Server {
    Waitress,
    Gunicorn,
    Uvicorn,
    Hypercorn,
    /// Werkzeug's or Django's development server.
    Development,
}

impl Server {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Server::Waitress => "waitress",
            Server::Gunicorn => "gunicorn",
            Server::Uvicorn => "uvicorn",
            Server::Hypercorn => "hypercorn",
            Server::Development => "the development server",
        }
    }

    /// Whether requests run on an event loop rather than on worker threads or processes.
    pub(crate) fn event_loop(self) -> bool {
        matches!(self, Server::Uvicorn | Server::Hypercorn)
    }

    /// Where its worker count is set.
    pub(crate) fn workers_setting(self) -> &'static str {
        match self {
            Server::Waitress => {
                "waitress's `threads=` (`serve(app, threads=N)`, `waitress-serve --threads N`; 4 by default)"
            }
            Server::Gunicorn => "gunicorn's `--workers N` (processes) and `--threads N` (threads per worker)",
            Server::Uvicorn => {
                "uvicorn's `--workers N`, and for sync endpoints Starlette's thread pool (`anyio.to_thread.current_default_thread_limiter().total_tokens`, 40 by default)"
            }
            Server::Hypercorn => "hypercorn's `--workers N`",
            Server::Development => {
                "a production server's workers (gunicorn `--workers`, waitress `threads=`): the development server is not one"
            }
        }
    }

    /// How to run more processes, so a GIL-bound service uses every core: `cores` of them when
    /// the host's cores are known, `N` (the cores) otherwise.
    pub(crate) fn processes_setting(self, cores: Option<f64>) -> String {
        let n = cores.map_or_else(|| "N".to_owned(), |c| format!("{:.0}", c.max(1.0)));
        match self {
            Server::Gunicorn => format!("gunicorn `--workers {n}`"),
            Server::Uvicorn => format!("uvicorn `--workers {n}`"),
            Server::Hypercorn => format!("hypercorn `--workers {n}`"),
            // waitress runs one process: its threads share one GIL.
            Server::Waitress => format!(
                "{n} processes (waitress runs one, whose threads share one GIL: serve the same WSGI app with gunicorn \
                 `--workers {n}`)"
            ),
            Server::Development => {
                format!("a production server with {n} processes (gunicorn `--workers {n}`)")
            }
        }
    }
}

/// What the evidence says the service is built with; each part absent when nothing names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceStack {
    pub(crate) framework: Option<Framework>,
    pub(crate) orm: Option<Orm>,
    pub(crate) server: Option<Server>,
}

impl ServiceStack {
    /// The stack the instrumentation scopes of an endpoint's spans name.
    pub(crate) fn from_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> ServiceStack {
        let mut stack = ServiceStack::default();
        let mut driver = false;
        for scope in scopes {
            let name = scope.to_ascii_lowercase();
            let has = |needle: &str| name.contains(needle);
            if has("rest_framework") {
                stack.framework = Some(Framework::DjangoRest);
            } else if has("django") {
                stack.framework.get_or_insert(Framework::Django);
                // Django's ORM runs the statements its instrumentation's driver spans show.
                stack.orm = Some(Orm::Django);
            } else if has("flask") {
                stack.framework.get_or_insert(Framework::Flask);
            } else if has("fastapi") || has("starlette") {
                stack.framework.get_or_insert(Framework::FastApi);
            } else if has("spring") {
                stack.framework.get_or_insert(Framework::Spring);
            } else if has("action_pack") || has("actionpack") || has("rails") {
                stack.framework.get_or_insert(Framework::Rails);
            } else if has("express") {
                stack.framework.get_or_insert(Framework::Express);
            }
            if has("sqlalchemy") {
                stack.orm = Some(Orm::SqlAlchemy);
            } else if has("hibernate") {
                stack.orm.get_or_insert(Orm::Hibernate);
            } else if has("active_record") || has("activerecord") {
                stack.orm.get_or_insert(Orm::ActiveRecord);
            } else if has("psycopg")
                || has("asyncpg")
                || has("dbapi")
                || has("jdbc")
                || has("instrumentation-pg")
            {
                driver = true;
            }
        }
        if driver && stack.orm.is_none() && stack.framework != Some(Framework::Django) {
            stack.orm = Some(Orm::Driver);
        }
        stack
    }

    /// The server a process's command line runs (`gunicorn -w 4 app:app`).
    pub(crate) fn from_command(command: &str) -> ServiceStack {
        let server = command.split_whitespace().take(4).find_map(|arg| {
            let program = arg.rsplit('/').next().unwrap_or(arg);
            match program {
                "gunicorn" => Some(Server::Gunicorn),
                "uvicorn" => Some(Server::Uvicorn),
                "hypercorn" => Some(Server::Hypercorn),
                "waitress-serve" | "waitress" => Some(Server::Waitress),
                _ => None,
            }
        });
        ServiceStack {
            server,
            ..ServiceStack::default()
        }
    }

    /// This stack, its gaps filled from `other`.
    pub(crate) fn or(self, other: ServiceStack) -> ServiceStack {
        ServiceStack {
            framework: self.framework.or(other.framework),
            orm: self.orm.or(other.orm),
            server: self.server.or(other.server),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_the_framework_and_how_it_reaches_the_database() {
        let django = ServiceStack::from_scopes([
            "opentelemetry.instrumentation.django",
            "opentelemetry.instrumentation.psycopg2",
        ]);
        assert_eq!(django.framework, Some(Framework::Django));
        assert_eq!(django.orm, Some(Orm::Django), "Django's ORM, over psycopg2");
        let flask = ServiceStack::from_scopes([
            "opentelemetry.instrumentation.flask",
            "opentelemetry.instrumentation.psycopg2",
        ]);
        assert_eq!(
            (flask.framework, flask.orm),
            (Some(Framework::Flask), Some(Orm::Driver))
        );
        let fastapi = ServiceStack::from_scopes([
            "opentelemetry.instrumentation.fastapi",
            "opentelemetry.instrumentation.sqlalchemy",
        ]);
        assert_eq!(
            (fastapi.framework, fastapi.orm),
            (Some(Framework::FastApi), Some(Orm::SqlAlchemy))
        );
        assert_eq!(
            ServiceStack::from_scopes(["io.opentelemetry.jdbc"]).orm,
            Some(Orm::Driver)
        );
        assert_eq!(
            ServiceStack::from_scopes(std::iter::empty()),
            ServiceStack::default()
        );
    }

    #[test]
    fn the_command_line_names_the_server() {
        assert_eq!(
            ServiceStack::from_command("/srv/.venv/bin/python /srv/.venv/bin/gunicorn -w 4 app:app").server,
            Some(Server::Gunicorn)
        );
        assert_eq!(
            ServiceStack::from_command("uvicorn main:app --port 8000").server,
            Some(Server::Uvicorn)
        );
        assert_eq!(ServiceStack::from_command("python serve.py 8000").server, None);
    }
}
