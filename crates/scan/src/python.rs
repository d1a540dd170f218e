//! The one module that knows Ruff's parser. Its AST (`ruff_python_ast`, published as an internal
//! component with no API promise) is turned here into the small tree the rules read — statements
//! that bind, loop and define, and expressions that call, await and name — so a bump of the
//! parser touches this file alone.

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{self as ast, PySourceType};
use ruff_text_size::Ranged;

/// A byte offset into the file's text; lines and columns are worked out only for what is reported.
pub(crate) type Offset = u32;

/// A parsed module: its statements and the syntax errors recovered from.
pub(crate) struct Module {
    pub(crate) body: Vec<Stmt>,
    pub(crate) errors: Vec<(Offset, String)>,
}

/// An imported name: `a.b` imported as `c`.
#[derive(Clone, Debug)]
pub(crate) struct Alias {
    pub(crate) name: String,
    pub(crate) asname: Option<String>,
}

/// A function definition.
#[derive(Debug)]
pub(crate) struct Def {
    pub(crate) name: String,
    pub(crate) is_async: bool,
    pub(crate) decorators: Vec<Expr>,
    pub(crate) params: Vec<String>,
    pub(crate) body: Vec<Stmt>,
}

/// A class definition.
#[derive(Debug)]
pub(crate) struct Class {
    pub(crate) name: String,
    pub(crate) bases: Vec<Expr>,
    pub(crate) body: Vec<Stmt>,
}

/// A statement, as much of it as the rules read.
#[derive(Debug)]
pub(crate) enum Stmt {
    Import(Vec<Alias>),
    ImportFrom {
        module: String,
        names: Vec<Alias>,
    },
    Def(Def),
    Class(Class),
    /// `for target in iter:` (and `async for`).
    For {
        target: Expr,
        iter: Expr,
        body: Vec<Stmt>,
        other: Vec<Stmt>,
    },
    /// `while test:`.
    While {
        test: Expr,
        body: Vec<Stmt>,
        other: Vec<Stmt>,
    },
    /// `a = b = value`, `a: T = value`, `a += value`.
    Assign {
        targets: Vec<Expr>,
        value: Option<Expr>,
    },
    Return {
        value: Option<Expr>,
    },
    /// `with a as b, c:` (and `async with`).
    With {
        items: Vec<(Expr, Option<Expr>)>,
        body: Vec<Stmt>,
    },
    /// An expression statement.
    Expr(Expr),
    /// Anything else: the expressions it evaluates and the bodies it holds (`if`, `try`, `match`).
    Other {
        exprs: Vec<Expr>,
        bodies: Vec<Vec<Stmt>>,
    },
}

/// One `for … in …` of a comprehension.
#[derive(Debug)]
pub(crate) struct Generator {
    pub(crate) target: Expr,
    pub(crate) iter: Expr,
    pub(crate) conditions: Vec<Expr>,
}

/// An expression, as much of it as the rules read.
#[derive(Debug)]
pub(crate) enum Expr {
    Name {
        id: String,
        at: Offset,
    },
    Attribute {
        value: Box<Expr>,
        attr: String,
        at: Offset,
    },
    Call {
        func: Box<Expr>,
        args: Vec<Expr>,
        keywords: Vec<(Option<String>, Expr)>,
        at: Offset,
        end: Offset,
    },
    Await {
        value: Box<Expr>,
        at: Offset,
    },
    /// A string literal, its value.
    Str {
        value: String,
        at: Offset,
    },
    /// A string built when it runs: an f-string, its interpolated parts.
    Formatted {
        parts: Vec<Expr>,
        at: Offset,
    },
    /// A list, set, dict or generator comprehension: its loops and what each iteration builds.
    Comprehension {
        elements: Vec<Expr>,
        generators: Vec<Generator>,
        at: Offset,
    },
    Subscript {
        value: Box<Expr>,
        slice: Box<Expr>,
        at: Offset,
    },
    Slice {
        at: Offset,
    },
    /// A lambda: its body runs later, not where it is written.
    Lambda {
        body: Box<Expr>,
        at: Offset,
    },
    /// Anything else, with its direct sub-expressions.
    Other {
        children: Vec<Expr>,
        at: Offset,
    },
}

impl Expr {
    /// Where it starts.
    pub(crate) fn at(&self) -> Offset {
        match self {
            Expr::Name { at, .. }
            | Expr::Attribute { at, .. }
            | Expr::Call { at, .. }
            | Expr::Await { at, .. }
            | Expr::Str { at, .. }
            | Expr::Formatted { at, .. }
            | Expr::Comprehension { at, .. }
            | Expr::Subscript { at, .. }
            | Expr::Slice { at }
            | Expr::Lambda { at, .. }
            | Expr::Other { at, .. } => *at,
        }
    }
}

/// Lines and columns of a file's offsets.
pub(crate) struct Lines(ruff_source_file::LineIndex);

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        Lines(ruff_source_file::LineIndex::from_source_text(text))
    }

    /// The line and column (from 1, the column in characters) of an offset.
    pub(crate) fn position(&self, offset: Offset, text: &str) -> (u32, u32) {
        let at = self.0.line_column(ruff_text_size::TextSize::new(offset), text);
        (at.line.get() as u32, at.column.get() as u32)
    }

    /// A line's text (from 1), its line break left out: a line ends at `\n`, `\r\n` or a lone
    /// `\r`, as Python reads it.
    pub(crate) fn text<'a>(&self, line: u32, text: &'a str) -> &'a str {
        let Some(line) = ruff_source_file::OneIndexed::new(line as usize) else {
            return "";
        };
        if line.get() > self.0.line_count() {
            return "";
        }
        let range = self.0.line_range(line, text);
        text.get(range.start().to_usize()..range.end().to_usize())
            .unwrap_or_default()
            .trim_end_matches(['\n', '\r'])
    }
}

/// Parses Python source, recovering from syntax errors: what parses is kept.
pub(crate) fn parse(text: &str) -> Module {
    let parsed = ruff_python_parser::parse_unchecked_source(text, PySourceType::Python);
    let errors = parsed
        .errors()
        .iter()
        .map(|e| (e.location.start().to_u32(), e.error.to_string()))
        .collect();
    Module {
        body: stmts(&parsed.syntax().body),
        errors,
    }
}

fn stmts(body: &[ast::Stmt]) -> Vec<Stmt> {
    body.iter().map(stmt).collect()
}

fn aliases(names: &[ast::Alias]) -> Vec<Alias> {
    names
        .iter()
        .map(|a| Alias {
            name: a.name.to_string(),
            asname: a.asname.as_ref().map(|n| n.to_string()),
        })
        .collect()
}

fn stmt(s: &ast::Stmt) -> Stmt {
    match s {
        ast::Stmt::FunctionDef(f) => {
            let p = &f.parameters;
            let params = p
                .posonlyargs
                .iter()
                .chain(&p.args)
                .chain(&p.kwonlyargs)
                .map(|a| a.parameter.name.to_string())
                .collect();
            Stmt::Def(Def {
                name: f.name.to_string(),
                is_async: f.is_async,
                decorators: f.decorator_list.iter().map(|d| expr(&d.expression)).collect(),
                params,
                body: stmts(&f.body),
            })
        }
        ast::Stmt::ClassDef(c) => Stmt::Class(Class {
            name: c.name.to_string(),
            bases: c
                .arguments
                .as_ref()
                .map(|a| a.args.iter().map(expr).collect())
                .unwrap_or_default(),
            body: stmts(&c.body),
        }),
        ast::Stmt::Import(i) => Stmt::Import(aliases(&i.names)),
        ast::Stmt::ImportFrom(i) => Stmt::ImportFrom {
            module: i.module.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            names: aliases(&i.names),
        },
        ast::Stmt::For(f) => Stmt::For {
            target: expr(&f.target),
            iter: expr(&f.iter),
            body: stmts(&f.body),
            other: stmts(&f.orelse),
        },
        ast::Stmt::While(w) => Stmt::While {
            test: expr(&w.test),
            body: stmts(&w.body),
            other: stmts(&w.orelse),
        },
        ast::Stmt::Assign(a) => Stmt::Assign {
            targets: a.targets.iter().map(expr).collect(),
            value: Some(expr(&a.value)),
        },
        ast::Stmt::AnnAssign(a) => Stmt::Assign {
            targets: vec![expr(&a.target)],
            value: a.value.as_deref().map(expr),
        },
        ast::Stmt::AugAssign(a) => Stmt::Assign {
            targets: vec![expr(&a.target)],
            value: Some(expr(&a.value)),
        },
        ast::Stmt::Return(r) => Stmt::Return {
            value: r.value.as_deref().map(expr),
        },
        ast::Stmt::With(w) => Stmt::With {
            items: w
                .items
                .iter()
                .map(|i| (expr(&i.context_expr), i.optional_vars.as_deref().map(expr)))
                .collect(),
            body: stmts(&w.body),
        },
        ast::Stmt::Expr(e) => Stmt::Expr(expr(&e.value)),
        ast::Stmt::If(i) => {
            let mut exprs = vec![expr(&i.test)];
            let mut bodies = vec![stmts(&i.body)];
            for clause in &i.elif_else_clauses {
                exprs.extend(clause.test.as_ref().map(expr));
                bodies.push(stmts(&clause.body));
            }
            Stmt::Other { exprs, bodies }
        }
        ast::Stmt::Try(t) => {
            let mut bodies = vec![stmts(&t.body)];
            for handler in &t.handlers {
                let ast::ExceptHandler::ExceptHandler(h) = handler;
                bodies.push(stmts(&h.body));
            }
            bodies.push(stmts(&t.orelse));
            bodies.push(stmts(&t.finalbody));
            Stmt::Other {
                exprs: Vec::new(),
                bodies,
            }
        }
        ast::Stmt::Match(m) => Stmt::Other {
            exprs: vec![expr(&m.subject)],
            bodies: m.cases.iter().map(|c| stmts(&c.body)).collect(),
        },
        other => {
            let mut children = Children::default();
            visitor::walk_stmt(&mut children, other);
            Stmt::Other {
                exprs: children.0,
                bodies: Vec::new(),
            }
        }
    }
}

/// Collects an expression's (or a simple statement's) direct sub-expressions.
#[derive(Default)]
struct Children(Vec<Expr>);

impl<'a> Visitor<'a> for Children {
    fn visit_expr(&mut self, e: &'a ast::Expr) {
        self.0.push(expr(e));
    }
    fn visit_stmt(&mut self, _: &'a ast::Stmt) {}
}

fn generators(gens: &[ast::Comprehension]) -> Vec<Generator> {
    gens.iter()
        .map(|g| Generator {
            target: expr(&g.target),
            iter: expr(&g.iter),
            conditions: g.ifs.iter().map(expr).collect(),
        })
        .collect()
}

fn expr(e: &ast::Expr) -> Expr {
    let at = e.start().to_u32();
    match e {
        ast::Expr::Name(n) => Expr::Name {
            id: n.id.to_string(),
            at,
        },
        ast::Expr::Attribute(a) => Expr::Attribute {
            value: Box::new(expr(&a.value)),
            attr: a.attr.to_string(),
            at,
        },
        ast::Expr::Call(c) => Expr::Call {
            func: Box::new(expr(&c.func)),
            args: c.arguments.args.iter().map(expr).collect(),
            keywords: c
                .arguments
                .keywords
                .iter()
                .map(|k| (k.arg.as_ref().map(|a| a.to_string()), expr(&k.value)))
                .collect(),
            at,
            end: c.end().to_u32(),
        },
        ast::Expr::Await(a) => Expr::Await {
            value: Box::new(expr(&a.value)),
            at,
        },
        ast::Expr::StringLiteral(s) => Expr::Str {
            value: s.value.to_str().to_owned(),
            at,
        },
        ast::Expr::FString(_) => {
            let mut children = Children::default();
            visitor::walk_expr(&mut children, e);
            Expr::Formatted {
                parts: children.0,
                at,
            }
        }
        ast::Expr::ListComp(c) => Expr::Comprehension {
            elements: vec![expr(&c.elt)],
            generators: generators(&c.generators),
            at,
        },
        ast::Expr::SetComp(c) => Expr::Comprehension {
            elements: vec![expr(&c.elt)],
            generators: generators(&c.generators),
            at,
        },
        ast::Expr::Generator(c) => Expr::Comprehension {
            elements: vec![expr(&c.elt)],
            generators: generators(&c.generators),
            at,
        },
        ast::Expr::DictComp(c) => Expr::Comprehension {
            elements: c.key.iter().map(|k| expr(k)).chain([expr(&c.value)]).collect(),
            generators: generators(&c.generators),
            at,
        },
        ast::Expr::Subscript(s) => Expr::Subscript {
            value: Box::new(expr(&s.value)),
            slice: Box::new(expr(&s.slice)),
            at,
        },
        ast::Expr::Slice(_) => Expr::Slice { at },
        ast::Expr::Lambda(l) => Expr::Lambda {
            body: Box::new(expr(&l.body)),
            at,
        },
        other => {
            let mut children = Children::default();
            visitor::walk_expr(&mut children, other);
            Expr::Other {
                children: children.0,
                at,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_keeps_what_parses() {
        let module = parse("import time\ndef f(:\n    pass\nasync def g():\n    time.sleep(1)\n");
        assert!(!module.errors.is_empty());
        assert!(
            module
                .body
                .iter()
                .any(|s| matches!(s, Stmt::Def(d) if d.name == "g" && d.is_async))
        );
    }
}
