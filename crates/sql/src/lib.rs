//! Statements read with PostgreSQL's own parser (`pg_query`, libpg_query), as chokepoint needs
//! them: the columns a B-tree index could serve — filters, join keys, `ORDER BY` — the pattern
//! filters only a trigram index serves (`~`, `~*`, `ILIKE`, `LIKE '%…'`), the `LIMIT` and where its
//! parameter stands, each with its table (aliases resolved), and literal values redacted from
//! statement texts.
//!
//! Shared by the PostgreSQL inspector, which costs candidate indexes, and the detectors, which
//! name the index that fits a slow statement seen only in traces.
//!
//! ```
//! let parsed = chokepoint_sql::parse_normalized(
//!     "SELECT r.id FROM reviews r JOIN books b ON b.id = r.book_id WHERE r.body ~* ? AND b.price > ?",
//! )
//! .expect("parses");
//! assert_eq!(parsed.index_columns("books"), ["id", "price"]);
//! assert_eq!(parsed.patterns_of("reviews")[0].column, "body");
//! ```

use pg_query::NodeEnum;
use pg_query::protobuf::{AExprKind, BoolExprType, Node, a_const};

/// How a statement uses a column, in the order a B-tree index would want them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `col = $1`, `col IN (…)`, `col IS NULL`.
    Equality,
    /// `a.col = b.col` in a join condition.
    Join,
    /// `col > $1`, `BETWEEN`, `LIKE 'prefix%'`.
    Range,
    /// `ORDER BY col`.
    Order,
}

/// One column a statement filters, joins or sorts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnUse {
    /// The table it belongs to, aliases resolved, when the statement qualifies it.
    pub table: Option<String>,
    /// The column.
    pub column: String,
    /// How the statement uses it.
    pub role: Role,
    /// The function it is compared through, when it is (`lower(email) = lower($1)`: `lower`):
    /// only an index on that expression serves it.
    pub function: Option<String>,
}

impl ColumnUse {
    /// What an index on it indexes: the column, or the expression (`lower(email)`).
    pub fn expression(&self) -> String {
        expression(&self.column, self.function.as_deref())
    }
}

/// A column, or a function of it, as an index names it.
fn expression(column: &str, function: Option<&str>) -> String {
    match function {
        Some(function) => format!("{function}({column})"),
        None => column.to_owned(),
    }
}

/// Functions a framework wraps a column in for a case-insensitive comparison (Django's
/// `iexact`, `icontains`: `UPPER(col::text) LIKE UPPER(…)`), which an index on the expression
/// serves.
const CASE_FUNCTIONS: &[&str] = &["upper", "lower"];

/// The kind of a pattern filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternKind {
    /// `LIKE` with a pattern that does not start with a fixed prefix (or is a parameter).
    Like,
    /// `ILIKE`.
    Ilike,
    /// `~`.
    Regex,
    /// `~*`, case-insensitive.
    RegexIgnoringCase,
    /// `SIMILAR TO`.
    Similar,
}

impl PatternKind {
    /// The operator as written.
    pub fn operator(self) -> &'static str {
        match self {
            PatternKind::Like => "LIKE",
            PatternKind::Ilike => "ILIKE",
            PatternKind::Regex => "~",
            PatternKind::RegexIgnoringCase => "~*",
            PatternKind::Similar => "SIMILAR TO",
        }
    }
}

/// A column matched against a pattern no B-tree index serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternUse {
    /// The table it belongs to, aliases resolved, when the statement qualifies it.
    pub table: Option<String>,
    /// The column.
    pub column: String,
    /// The operator.
    pub kind: PatternKind,
    /// The function the column is matched through (`UPPER(body) LIKE UPPER($1)`: `upper`).
    pub function: Option<String>,
}

impl PatternUse {
    /// What a trigram index on it indexes: the column, or the expression (`upper(body)`).
    pub fn expression(&self) -> String {
        expression(&self.column, self.function.as_deref())
    }
}

/// A statement's `LIMIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `LIMIT 20`.
    Literal(i64),
    /// `LIMIT $2`: the parameter's number and the byte offset where `$2` stands.
    Param {
        /// The parameter's number.
        number: i32,
        /// Where it stands in the text, in bytes.
        location: usize,
    },
}

/// A parsed statement: the tables it reads and how it uses their columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Tables named in `FROM` and `JOIN`, as written (`schema.table` or `table`).
    pub tables: Vec<String>,
    /// Column uses a B-tree index could serve, in statement order.
    pub columns: Vec<ColumnUse>,
    /// Pattern filters, in statement order.
    pub patterns: Vec<PatternUse>,
    /// The top-level `LIMIT`, if any.
    pub limit: Option<Limit>,
    /// The columns a `SELECT` returns by name (`SELECT b.id, b.author_id FROM books b`), each
    /// with its table: a parent query's foreign keys name the relations loaded after it.
    pub selected: Vec<(Option<String>, String)>,
}

/// The most columns a proposed index gets.
const MAX_INDEX_COLUMNS: usize = 3;

/// Parses `query` with PostgreSQL's grammar; the error is the parser's message.
pub fn parse(query: &str) -> Result<Parsed, String> {
    let result = pg_query::parse(query, pg_query::ParserOptions::DEFAULT).map_err(|e| e.to_string())?;
    let mut walker = Walker::default();
    for (i, raw) in result.protobuf.stmts.iter().enumerate() {
        if let Some(stmt) = raw.stmt.as_deref() {
            walker.statement(stmt, i == 0);
        }
    }
    let resolve =
        |table: Option<String>| table.map(|name| result.aliases.get(&name).cloned().unwrap_or(name));
    Ok(Parsed {
        tables: walker.tables,
        columns: walker
            .columns
            .into_iter()
            .map(|c| ColumnUse {
                table: resolve(c.table),
                ..c
            })
            .collect(),
        patterns: walker
            .patterns
            .into_iter()
            .map(|p| PatternUse {
                table: resolve(p.table),
                ..p
            })
            .collect(),
        limit: walker.limit,
        selected: walker
            .selected
            .into_iter()
            .map(|(table, column)| (resolve(table), column))
            .collect(),
    })
}

/// Parses a statement normalized with `?` for its literals and parameters (as chokepoint
/// normalizes statements read from traces): each `?` becomes `$1`, `$2`, … first.
pub fn parse_normalized(text: &str) -> Result<Parsed, String> {
    let mut numbered = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            numbered.push('$');
            numbered.push_str(&n.to_string());
        } else {
            numbered.push(c);
        }
    }
    parse(&numbered)
}

/// `query` with its `LIMIT $n` replaced by `LIMIT rows`: the page the calls really ask for, for
/// a plan costed the way the statement runs (a generic plan guesses a tenth of the rows). The
/// parameter stays declared; only its use in the `LIMIT` goes.
pub fn with_limit(query: &str, limit: Limit, rows: u64) -> Option<String> {
    let Limit::Param { number, location } = limit else {
        return None;
    };
    let token = format!("${number}");
    let rest = query.get(location..)?;
    if !rest.starts_with(&token) || rest[token.len()..].starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(format!(
        "{}{}{}",
        &query[..location],
        rows.max(1),
        &rest[token.len()..]
    ))
}

impl Parsed {
    /// Whether a column use or pattern qualified by `table` belongs to `relation`
    /// (`schema.table`); unqualified ones do when the statement reads one table only.
    fn belongs(&self, table: &Option<String>, relation: &str) -> bool {
        let bare = relation.rsplit('.').next().unwrap_or(relation);
        match table {
            Some(t) => t == relation || t == bare || t.rsplit('.').next() == Some(bare),
            None => self.tables.len() == 1,
        }
    }

    /// The columns of `relation` a B-tree index could serve, in the order an index wants them —
    /// equality filters, join keys, ranges, sort keys — without duplicates, at most three.
    pub fn index_columns(&self, relation: &str) -> Vec<String> {
        let mut uses: Vec<&ColumnUse> = self
            .columns
            .iter()
            .filter(|c| self.belongs(&c.table, relation))
            .collect();
        uses.sort_by_key(|c| c.role);
        let mut columns: Vec<String> = Vec::new();
        for used in uses {
            let expression = used.expression();
            if !columns.contains(&expression) && columns.len() < MAX_INDEX_COLUMNS {
                columns.push(expression);
            }
            // Columns after a range cannot use the index's order.
            if used.role == Role::Range {
                break;
            }
        }
        columns
    }

    /// The pattern filters on columns of `relation`.
    pub fn patterns_of(&self, relation: &str) -> Vec<&PatternUse> {
        self.patterns
            .iter()
            .filter(|p| self.belongs(&p.table, relation))
            .collect()
    }
}

#[derive(Default)]
struct Walker {
    tables: Vec<String>,
    columns: Vec<ColumnUse>,
    patterns: Vec<PatternUse>,
    limit: Option<Limit>,
    selected: Vec<(Option<String>, String)>,
}

impl Walker {
    fn statement(&mut self, node: &Node, first: bool) {
        match node.node.as_ref() {
            Some(NodeEnum::SelectStmt(select)) => {
                if first {
                    self.limit = select.limit_count.as_deref().and_then(limit_of);
                }
                self.select(select)
            }
            Some(NodeEnum::UpdateStmt(update)) => {
                if let Some(relation) = &update.relation {
                    self.range_var(relation);
                }
                if let Some(clause) = update.where_clause.as_deref() {
                    self.condition(clause, false);
                }
            }
            Some(NodeEnum::DeleteStmt(delete)) => {
                if let Some(relation) = &delete.relation {
                    self.range_var(relation);
                }
                if let Some(clause) = delete.where_clause.as_deref() {
                    self.condition(clause, false);
                }
            }
            _ => {}
        }
    }

    fn select(&mut self, select: &pg_query::protobuf::SelectStmt) {
        for target in &select.target_list {
            if let Some(NodeEnum::ResTarget(target)) = target.node.as_ref()
                && let Some(column) = target.val.as_deref().and_then(column_of)
            {
                self.selected.push(column);
            }
        }
        for from in &select.from_clause {
            self.relation_item(from);
        }
        if let Some(clause) = select.where_clause.as_deref() {
            self.condition(clause, false);
        }
        for sort in &select.sort_clause {
            if let Some(NodeEnum::SortBy(by)) = sort.node.as_ref()
                && let Some(column) = by.node.as_deref().and_then(column_or_case_function)
            {
                self.push(column, Role::Order);
            }
        }
        // The branches of UNION, INTERSECT and EXCEPT.
        for side in [select.larg.as_deref(), select.rarg.as_deref()]
            .into_iter()
            .flatten()
        {
            self.select(side);
        }
    }

    fn range_var(&mut self, relation: &pg_query::protobuf::RangeVar) {
        let name = if relation.schemaname.is_empty() {
            relation.relname.clone()
        } else {
            format!("{}.{}", relation.schemaname, relation.relname)
        };
        if !self.tables.contains(&name) {
            self.tables.push(name);
        }
    }

    fn relation_item(&mut self, node: &Node) {
        match node.node.as_ref() {
            Some(NodeEnum::RangeVar(relation)) => self.range_var(relation),
            Some(NodeEnum::JoinExpr(join)) => {
                for side in [join.larg.as_deref(), join.rarg.as_deref()].into_iter().flatten() {
                    self.relation_item(side);
                }
                if let Some(quals) = join.quals.as_deref() {
                    self.condition(quals, true);
                }
            }
            _ => {}
        }
    }

    /// Columns compared in a condition; `in_join` marks join conditions.
    fn condition(&mut self, node: &Node, in_join: bool) {
        match node.node.as_ref() {
            // Either side of an OR alone cannot use an index on the other's column.
            Some(NodeEnum::BoolExpr(expr)) if expr.boolop == BoolExprType::AndExpr as i32 => {
                for arg in &expr.args {
                    self.condition(arg, in_join);
                }
            }
            Some(NodeEnum::NullTest(test)) => {
                if let Some((table, column)) = test.arg.as_deref().and_then(column_of) {
                    self.push((table, column, None), Role::Equality);
                }
            }
            Some(NodeEnum::AExpr(expr)) => {
                let left = expr.lexpr.as_deref().and_then(column_or_case_function);
                let right = expr.rexpr.as_deref().and_then(column_or_case_function);
                let operator = expr.name.iter().find_map(|n| match n.node.as_ref() {
                    Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                    _ => None,
                });
                let kind = AExprKind::try_from(expr.kind).unwrap_or(AExprKind::Undefined);
                let pattern = match (kind, operator) {
                    (AExprKind::AexprIlike, Some("~~*")) => Some(PatternKind::Ilike),
                    (AExprKind::AexprOp, Some("~")) => Some(PatternKind::Regex),
                    (AExprKind::AexprOp, Some("~*")) => Some(PatternKind::RegexIgnoringCase),
                    (AExprKind::AexprSimilar, Some("~")) => Some(PatternKind::Similar),
                    // `LIKE 'abc%'` is a range a B-tree serves; a leading wildcard or an
                    // unknown pattern (a parameter) is not.
                    (AExprKind::AexprLike, Some("~~")) if !fixed_prefix(expr.rexpr.as_deref()) => {
                        Some(PatternKind::Like)
                    }
                    _ => None,
                };
                if let (Some(kind), Some((table, column, function))) = (pattern, left.clone()) {
                    self.patterns.push(PatternUse {
                        table,
                        column,
                        kind,
                        function,
                    });
                    return;
                }
                let role = match (kind, operator) {
                    (AExprKind::AexprOp, Some("=")) | (AExprKind::AexprIn | AExprKind::AexprOpAny, _) => {
                        Role::Equality
                    }
                    (AExprKind::AexprOp, Some("<" | ">" | "<=" | ">="))
                    | (AExprKind::AexprBetween, _)
                    | (AExprKind::AexprLike, Some("~~")) => Role::Range,
                    _ => return,
                };
                match (left, right) {
                    (Some(l), Some(r)) if in_join || role == Role::Equality => {
                        self.push(l, Role::Join);
                        self.push(r, Role::Join);
                    }
                    (Some(column), None) | (None, Some(column)) => self.push(column, role),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn push(&mut self, (table, column, function): (Option<String>, String, Option<String>), role: Role) {
        self.columns.push(ColumnUse {
            table,
            column,
            role,
            function,
        });
    }
}

/// Whether a `LIKE` pattern is a literal with a fixed prefix (`'abc%'`), which a B-tree can
/// range-scan.
fn fixed_prefix(pattern: Option<&Node>) -> bool {
    let Some(NodeEnum::AConst(constant)) = pattern.and_then(|p| p.node.as_ref()) else {
        return false;
    };
    match &constant.val {
        Some(a_const::Val::Sval(text)) => !text.sval.is_empty() && !text.sval.starts_with(['%', '_']),
        _ => false,
    }
}

/// The `LIMIT` of a statement: a literal count, or a parameter and where it stands.
fn limit_of(node: &Node) -> Option<Limit> {
    match node.node.as_ref()? {
        NodeEnum::ParamRef(param) => Some(Limit::Param {
            number: param.number,
            location: usize::try_from(param.location).ok()?,
        }),
        NodeEnum::AConst(constant) => match &constant.val {
            Some(a_const::Val::Ival(n)) => Some(Limit::Literal(i64::from(n.ival))),
            _ => None,
        },
        NodeEnum::TypeCast(cast) => limit_of(cast.arg.as_deref()?),
        _ => None,
    }
}

/// A column reference, or a case function of one (`UPPER("t"."body"::text)`), through casts: its
/// qualifier, name and the function.
fn column_or_case_function(node: &Node) -> Option<(Option<String>, String, Option<String>)> {
    match node.node.as_ref()? {
        NodeEnum::TypeCast(cast) => column_or_case_function(cast.arg.as_deref()?),
        NodeEnum::FuncCall(call) if call.args.len() == 1 => {
            let name = call.funcname.iter().rev().find_map(|n| match n.node.as_ref() {
                Some(NodeEnum::String(s)) => Some(s.sval.to_ascii_lowercase()),
                _ => None,
            })?;
            if !CASE_FUNCTIONS.contains(&name.as_str()) {
                return None;
            }
            let (table, column) = column_of(&call.args[0])?;
            Some((table, column, Some(name)))
        }
        _ => column_of(node).map(|(table, column)| (table, column, None)),
    }
}

/// A column reference, through casts: its qualifier (table or alias) and name.
fn column_of(node: &Node) -> Option<(Option<String>, String)> {
    match node.node.as_ref()? {
        NodeEnum::TypeCast(cast) => column_of(cast.arg.as_deref()?),
        NodeEnum::ColumnRef(reference) => {
            let names: Vec<&str> = reference
                .fields
                .iter()
                .filter_map(|f| match f.node.as_ref() {
                    Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                    _ => None,
                })
                .collect();
            let (&column, qualifier) = names.split_last()?;
            Some((qualifier.last().map(|q| (*q).to_owned()), column.to_owned()))
        }
        _ => None,
    }
}

/// `query` with every literal value replaced by a parameter (`$1`, `$2`, …), by PostgreSQL's
/// parser. Text it cannot parse — a statement `pg_stat_activity` truncated, say — has its
/// quoted strings and numbers blanked instead, so no value leaks either way.
pub fn redact(query: &str) -> String {
    match pg_query::normalize(query) {
        Ok(normalized) => normalized,
        Err(_) => blank_literals(query),
    }
}

/// Replaces `'…'` strings with `'?'` and numbers that do not continue an identifier with `?`.
fn blank_literals(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut chars = query.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        if c == '\'' {
            out.push_str("'?'");
            // To the closing quote; a doubled quote is an escaped one.
            while let Some(inner) = chars.next() {
                if inner == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        continue;
                    }
                    break;
                }
            }
            previous = '\'';
        } else if c.is_ascii_digit() && !(previous.is_alphanumeric() || previous == '_' || previous == '$') {
            while chars.peek().is_some_and(|d| d.is_ascii_digit() || *d == '.') {
                chars.next();
            }
            out.push('?');
            previous = '?';
        } else {
            out.push(c);
            previous = c;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(query: &str, relation: &str) -> Vec<String> {
        parse(query).expect("parses").index_columns(relation)
    }

    #[test]
    fn equality_filters_come_before_ranges_and_sorts() {
        let query =
            "SELECT * FROM events WHERE created_at > $1 AND user_id = $2 ORDER BY created_at LIMIT 10";
        assert_eq!(columns(query, "public.events"), ["user_id", "created_at"]);
    }

    #[test]
    fn aliases_resolve_to_their_tables_and_join_keys_count() {
        let query = "SELECT o.id FROM orders o JOIN items i ON i.order_id = o.id WHERE o.status = $1";
        let parsed = parse(query).expect("parses");
        assert_eq!(parsed.index_columns("public.items"), ["order_id"]);
        assert_eq!(parsed.index_columns("public.orders"), ["status", "id"]);
    }

    #[test]
    fn casts_are_seen_through_and_or_branches_are_not_candidates() {
        assert_eq!(
            columns(
                "SELECT id FROM users WHERE users.email = $1::varchar",
                "public.users"
            ),
            ["email"]
        );
        assert!(
            columns(
                "SELECT id FROM users WHERE email = $1 OR name = $2",
                "public.users"
            )
            .is_empty()
        );
    }

    #[test]
    fn pattern_filters_are_not_btree_candidates_and_keep_their_table() {
        let parsed = parse_normalized(
            "SELECT r.id, r.body FROM reviews r JOIN books b ON b.id = r.book_id \
             WHERE r.body ~* ? AND b.price > ? ORDER BY r.id LIMIT ?",
        )
        .expect("parses");
        assert_eq!(parsed.index_columns("public.books"), ["id", "price"]);
        assert_eq!(parsed.index_columns("public.reviews"), ["book_id", "id"]);
        let patterns = parsed.patterns_of("public.reviews");
        assert_eq!(patterns.len(), 1);
        assert_eq!(
            (patterns[0].column.as_str(), patterns[0].kind),
            ("body", PatternKind::RegexIgnoringCase)
        );
        assert!(parsed.patterns_of("public.books").is_empty());
        let like = |pattern: &str| {
            parse(&format!("SELECT id FROM users WHERE name LIKE {pattern}")).expect("parses")
        };
        assert_eq!(like("'%smith%'").patterns.len(), 1);
        assert_eq!(like("$1").patterns.len(), 1);
        assert!(like("'smi%'").patterns.is_empty(), "a prefix is a range");
        assert_eq!(like("'smi%'").index_columns("users"), ["name"]);
        let ilike = parse("SELECT id FROM users WHERE email ILIKE $1").expect("parses");
        assert_eq!(ilike.patterns[0].kind, PatternKind::Ilike);
    }

    #[test]
    fn a_column_a_framework_wraps_in_a_case_function_is_indexed_on_the_expression() {
        // Django's `body__icontains`.
        let parsed = parse_normalized(
            r#"SELECT "dj_review"."id" FROM "dj_review" WHERE UPPER("dj_review"."body"::text) LIKE UPPER(?) LIMIT ?"#,
        )
        .expect("parses");
        let patterns = parsed.patterns_of("public.dj_review");
        assert_eq!(patterns.len(), 1, "{parsed:?}");
        assert_eq!(patterns[0].expression(), "upper(body)");
        assert_eq!(patterns[0].kind, PatternKind::Like);
        // Django's `email__iexact`, as many write it by hand.
        let parsed = parse("SELECT id FROM users WHERE lower(email) = lower($1)").expect("parses");
        assert_eq!(parsed.index_columns("users"), ["lower(email)"]);
        // Any other function is no candidate.
        assert!(
            parse("SELECT id FROM users WHERE md5(email) = $1")
                .expect("parses")
                .index_columns("users")
                .is_empty()
        );
    }

    #[test]
    fn a_select_list_names_the_columns_it_returns() {
        let parsed = parse(
            r#"SELECT "dj_book"."id", "dj_book"."title", "dj_book"."author_id" FROM "dj_book" ORDER BY "dj_book"."id" LIMIT 50"#,
        )
        .expect("parses");
        assert_eq!(
            parsed.selected,
            [
                (Some("dj_book".to_owned()), "id".to_owned()),
                (Some("dj_book".to_owned()), "title".to_owned()),
                (Some("dj_book".to_owned()), "author_id".to_owned())
            ]
        );
    }

    #[test]
    fn the_limit_parameter_is_found_and_replaced_by_the_page_size() {
        let query = "SELECT id FROM messages WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2";
        let parsed = parse(query).expect("parses");
        let limit = parsed.limit.expect("a limit");
        assert!(matches!(limit, Limit::Param { number: 2, .. }), "{limit:?}");
        assert_eq!(
            with_limit(query, limit, 20).as_deref(),
            Some("SELECT id FROM messages WHERE user_id = $1 ORDER BY created_at DESC LIMIT 20")
        );
        assert_eq!(
            parse("SELECT id FROM t LIMIT 5").expect("parses").limit,
            Some(Limit::Literal(5))
        );
        assert_eq!(with_limit(query, Limit::Literal(5), 20), None);
    }

    #[test]
    fn redaction_removes_every_literal() {
        let redacted =
            redact("UPDATE accounts SET balance = balance - 500 WHERE owner = 'alice@example.com'");
        assert!(
            !redacted.contains("alice") && !redacted.contains("500"),
            "{redacted}"
        );
        let truncated = redact("SELECT * FROM accounts WHERE owner = 'alice@exam");
        assert!(!truncated.contains("alice"), "{truncated}");
        assert_eq!(
            blank_literals("SELECT t1.a FROM t1 WHERE b = 42 AND c = 'it''s'"),
            "SELECT t1.a FROM t1 WHERE b = ? AND c = '?'"
        );
    }
}
