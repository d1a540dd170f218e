//! What the service is built with — its web framework, its ORM or database driver, its server —
//! as the evidence shows it: the instrumentation scopes that recorded its spans
//! (`opentelemetry.instrumentation.django`), the packages in its profile's frames, the command
//! line of the process a ramp sampled. Fixes speak these terms, and only when the evidence names
//! them: a Django service is told `select_related`, not SQLAlchemy's `selectinload`, and waitress
//! `threads=`, not Starlette's thread pool.

use chokepoint_evidence::{Evidence, Profile};

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

    /// How to run more processes, so a GIL-bound service uses every core.
    pub(crate) fn processes_setting(self, cores: f64) -> String {
        let n = cores.max(1.0);
        match self {
            Server::Gunicorn => format!("gunicorn `--workers {n:.0}`"),
            Server::Uvicorn => format!("uvicorn `--workers {n:.0}`"),
            Server::Hypercorn => format!("hypercorn `--workers {n:.0}`"),
            // waitress runs one process: its threads share one GIL.
            Server::Waitress => format!(
                "{n:.0} processes (waitress runs one, whose threads share one GIL: serve the same WSGI app with gunicorn \
                 `--workers {n:.0}`)"
            ),
            Server::Development => {
                format!("a production server with {n:.0} processes (gunicorn `--workers {n:.0}`)")
            }
        }
    }
}

/// What the evidence says the service is built with; each part absent when nothing names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stack {
    pub(crate) framework: Option<Framework>,
    pub(crate) orm: Option<Orm>,
    pub(crate) server: Option<Server>,
}

impl Stack {
    /// The stack the instrumentation scopes of an endpoint's spans name.
    pub(crate) fn from_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Stack {
        let mut stack = Stack::default();
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

    /// The stack a profile's frames show: the packages its stacks run.
    pub(crate) fn from_profile(profile: &Profile) -> Stack {
        let mut stack = Stack::default();
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
            seen(crate::profile::module_of(&frame.file));
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

    /// The server a process's command line runs (`gunicorn -w 4 app:app`).
    pub(crate) fn from_command(command: &str) -> Stack {
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
        Stack {
            server,
            ..Stack::default()
        }
    }

    /// This stack, its gaps filled from `other`.
    pub(crate) fn or(self, other: Stack) -> Stack {
        Stack {
            framework: self.framework.or(other.framework),
            orm: self.orm.or(other.orm),
            server: self.server.or(other.server),
        }
    }

    /// The stack of the service the evidence is about: its profile's frames, its process's
    /// command line, and the scopes of the endpoint a ramp loaded (or, without a ramp, of every
    /// endpoint when the traces hold one service).
    pub(crate) fn of_evidence(evidence: &Evidence) -> Stack {
        let from_profile = evidence
            .profile
            .as_ref()
            .map(Stack::from_profile)
            .unwrap_or_default();
        let from_command = evidence
            .load
            .as_ref()
            .and_then(|run| run.target_command.as_deref())
            .map(Stack::from_command)
            .unwrap_or_default();
        let from_traces = evidence.traces.as_ref().map_or_else(Stack::default, |traces| {
            let loaded = evidence
                .load
                .as_ref()
                .and_then(|run| crate::traces::endpoint_of_url(traces, &run.url));
            match loaded {
                Some(endpoint) => Stack::from_scopes(endpoint.instrumentation.iter().map(String::as_str)),
                None => {
                    let first = traces.endpoints.first().map(|e| &e.service);
                    if traces.endpoints.iter().all(|e| Some(&e.service) == first) {
                        Stack::from_scopes(
                            traces
                                .endpoints
                                .iter()
                                .flat_map(|e| e.instrumentation.iter().map(String::as_str)),
                        )
                    } else {
                        Stack::default()
                    }
                }
            }
        });
        from_traces.or(from_profile).or(from_command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_the_framework_and_how_it_reaches_the_database() {
        let django = Stack::from_scopes([
            "opentelemetry.instrumentation.django",
            "opentelemetry.instrumentation.psycopg2",
        ]);
        assert_eq!(django.framework, Some(Framework::Django));
        assert_eq!(django.orm, Some(Orm::Django), "Django's ORM, over psycopg2");
        let flask = Stack::from_scopes([
            "opentelemetry.instrumentation.flask",
            "opentelemetry.instrumentation.psycopg2",
        ]);
        assert_eq!(
            (flask.framework, flask.orm),
            (Some(Framework::Flask), Some(Orm::Driver))
        );
        let fastapi = Stack::from_scopes([
            "opentelemetry.instrumentation.fastapi",
            "opentelemetry.instrumentation.sqlalchemy",
        ]);
        assert_eq!(
            (fastapi.framework, fastapi.orm),
            (Some(Framework::FastApi), Some(Orm::SqlAlchemy))
        );
        assert_eq!(
            Stack::from_scopes(["io.opentelemetry.jdbc"]).orm,
            Some(Orm::Driver)
        );
        assert_eq!(Stack::from_scopes(std::iter::empty()), Stack::default());
    }

    #[test]
    fn the_command_line_names_the_server() {
        assert_eq!(
            Stack::from_command("/srv/.venv/bin/python /srv/.venv/bin/gunicorn -w 4 app:app").server,
            Some(Server::Gunicorn)
        );
        assert_eq!(
            Stack::from_command("uvicorn main:app --port 8000").server,
            Some(Server::Uvicorn)
        );
        assert_eq!(Stack::from_command("python serve.py 8000").server, None);
    }
}
