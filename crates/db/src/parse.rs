//! Statements read with PostgreSQL's own parser (`pg_query`, libpg_query): the columns an index
//! could serve — filters, join keys, `ORDER BY` — taken from the parse tree, and literal values
//! redacted from statement texts.

use pg_query::NodeEnum;
use pg_query::protobuf::{AExprKind, BoolExprType, Node};

/// How a statement uses a column, in the order an index would want them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
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
pub(crate) struct ColumnUse {
    /// The table it belongs to, aliases resolved, when the statement qualifies it.
    pub(crate) table: Option<String>,
    /// The column.
    pub(crate) column: String,
    /// How the statement uses it.
    pub(crate) role: Role,
}

/// A parsed statement: the tables it reads and the columns it filters, joins and sorts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// Tables named in `FROM` and `JOIN`, as written (`schema.table` or `table`).
    pub(crate) tables: Vec<String>,
    /// Column uses, in statement order.
    pub(crate) columns: Vec<ColumnUse>,
}

/// The most columns a proposed index gets.
const MAX_INDEX_COLUMNS: usize = 3;

/// Parses `query` with PostgreSQL's grammar; the error is the parser's message.
pub(crate) fn parse(query: &str) -> Result<Parsed, String> {
    let result = pg_query::parse(query, pg_query::ParserOptions::DEFAULT).map_err(|e| e.to_string())?;
    let mut walker = Walker::default();
    for raw in &result.protobuf.stmts {
        if let Some(stmt) = raw.stmt.as_deref() {
            walker.statement(stmt);
        }
    }
    let resolve = |name: &str| {
        result
            .aliases
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    };
    let columns = walker
        .columns
        .into_iter()
        .map(|c| ColumnUse {
            table: c.table.as_deref().map(resolve),
            ..c
        })
        .collect();
    Ok(Parsed {
        tables: walker.tables,
        columns,
    })
}

impl Parsed {
    /// The columns of `relation` (`schema.table`) an index could serve, in the order an index
    /// wants them — equality filters, join keys, ranges, sort keys — without duplicates, at most
    /// three. Unqualified columns count when the statement reads one table only.
    pub(crate) fn index_columns(&self, relation: &str) -> Vec<String> {
        let bare = relation.rsplit('.').next().unwrap_or(relation);
        let ours = |table: &Option<String>| match table {
            Some(t) => t == relation || t == bare,
            None => self.tables.len() == 1,
        };
        let mut uses: Vec<&ColumnUse> = self.columns.iter().filter(|c| ours(&c.table)).collect();
        uses.sort_by_key(|c| c.role);
        let mut columns: Vec<String> = Vec::new();
        for used in uses {
            if !columns.contains(&used.column) && columns.len() < MAX_INDEX_COLUMNS {
                columns.push(used.column.clone());
            }
            // Columns after a range cannot use the index's order.
            if used.role == Role::Range {
                break;
            }
        }
        columns
    }
}

#[derive(Default)]
struct Walker {
    tables: Vec<String>,
    columns: Vec<ColumnUse>,
}

impl Walker {
    fn statement(&mut self, node: &Node) {
        match node.node.as_ref() {
            Some(NodeEnum::SelectStmt(select)) => self.select(select),
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
        for from in &select.from_clause {
            self.relation_item(from);
        }
        if let Some(clause) = select.where_clause.as_deref() {
            self.condition(clause, false);
        }
        for sort in &select.sort_clause {
            if let Some(NodeEnum::SortBy(by)) = sort.node.as_ref()
                && let Some(column) = by.node.as_deref().and_then(column_of)
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
                if let Some(column) = test.arg.as_deref().and_then(column_of) {
                    self.push(column, Role::Equality);
                }
            }
            Some(NodeEnum::AExpr(expr)) => {
                let left = expr.lexpr.as_deref().and_then(column_of);
                let right = expr.rexpr.as_deref().and_then(column_of);
                let operator = expr.name.iter().find_map(|n| match n.node.as_ref() {
                    Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                    _ => None,
                });
                let kind = AExprKind::try_from(expr.kind).unwrap_or(AExprKind::Undefined);
                let role = match (kind, operator) {
                    (AExprKind::AexprOp, Some("=")) | (AExprKind::AexprIn | AExprKind::AexprOpAny, _) => {
                        Role::Equality
                    }
                    (AExprKind::AexprOp, Some("<" | ">" | "<=" | ">="))
                    | (AExprKind::AexprBetween | AExprKind::AexprLike, _) => Role::Range,
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

    fn push(&mut self, (table, column): (Option<String>, String), role: Role) {
        self.columns.push(ColumnUse { table, column, role });
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
