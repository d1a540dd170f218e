//! SQL normalization and fingerprinting, so that one statement shape is one key however its
//! literals, parameters, lists, case and whitespace vary.
//!
//! Tokens come from `sqlparser`'s tokenizer (a real SQL lexer: strings with escaped quotes,
//! dollar quoting, comments); this module only decides what to keep. Statements that producers
//! already sanitized (`?`, `$1`, `%s`, `%(name)s`, `:name`) normalize to the same text as their
//! literal forms.

use chokepoint_evidence::{Fingerprint, Subject};
use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// A normalized statement and what detectors read from its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The statement with literals as `?`, lists collapsed, keywords upper-case, identifiers
    /// lower-case (unless quoted) and single spaces.
    pub normalized: String,
    /// A stable hash of `normalized`.
    pub fingerprint: Fingerprint,
    /// The first keyword, upper-case (`SELECT`, `INSERT`, `BEGIN`, …).
    pub verb: String,
    /// Relations named after `FROM`, `JOIN`, `UPDATE` and `INTO`, in order, without duplicates.
    pub tables: Vec<String>,
    /// Columns compared with a parameter (`col = ?`, `col IN (?)`), in order, without duplicates.
    pub filter_columns: Vec<String>,
    /// Whether the statement bounds its result (`LIMIT`, `FETCH FIRST`, `TOP`).
    pub has_limit: bool,
    /// Whether it reads the next page after a key (`col > ?` with a limit): cursor pagination.
    pub keyset_pagination: bool,
}

impl Statement {
    /// The statement as what a finding is about.
    pub fn subject(&self) -> Subject {
        Subject::Statement {
            fingerprint: self.fingerprint,
            text: self.normalized.clone(),
        }
    }
}

/// One normalized token.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Norm {
    /// A keyword (upper-case) or identifier (lower-case unless quoted).
    Word { text: String, keyword: bool },
    /// A literal or a bind parameter.
    Param,
    /// Punctuation or an operator, as written.
    Punct(String),
}

/// Normalizes `sql`. Text the tokenizer cannot read falls back to whitespace and case folding,
/// so every statement still gets a stable key.
pub fn normalize(sql: &str) -> Statement {
    let prepared = replace_pyformat(sql);
    let tokens = match Tokenizer::new(&GenericDialect {}, &prepared).tokenize() {
        Ok(tokens) => normalize_tokens(tokens),
        Err(_) => prepared
            .split_whitespace()
            .map(|w| Norm::Word {
                text: w.to_ascii_uppercase(),
                keyword: false,
            })
            .collect(),
    };
    let tokens = collapse_lists(tokens);
    let normalized = render(&tokens);
    let fingerprint = Fingerprint(xxhash_rust::xxh3::xxh3_64(normalized.as_bytes()));
    Statement {
        fingerprint,
        ..shape(&tokens, normalized)
    }
}

/// A key under which statements that differ only in numeric and string literal values meet, so
/// a cache can skip re-normalizing them: a 64-bit hash of the text with digit runs that do not
/// continue an identifier, and the contents of `'…'` strings, blanked. `None` when the text has
/// escapes, dollar quoting or non-ASCII characters, where this quick scan could misread where a
/// string ends.
pub fn literal_blind_key(sql: &str) -> Option<u64> {
    let bytes = sql.as_bytes();
    if !sql.is_ascii() || bytes.contains(&b'\\') || sql.contains("$$") {
        return None;
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    let mut in_string = false;
    let mut previous = b' ';
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let blank = if in_string {
            in_string = b != b'\'';
            in_string
        } else if b == b'\'' {
            in_string = true;
            false
        } else {
            b.is_ascii_digit()
                && (previous == b'#' || !(previous.is_ascii_alphanumeric() || previous == b'_'))
        };
        if blank {
            if run_start < i {
                hasher.update(&bytes[run_start..i]);
                hasher.update(b"\0");
            }
            run_start = i + 1;
        }
        previous = if blank && !in_string { b'#' } else { b };
    }
    hasher.update(&bytes[run_start..]);
    Some(hasher.digest())
}

/// Replaces psycopg/DB-API placeholders (`%s`, `%(name)s`) with `?`: the tokenizer would read
/// them as a modulo operator.
fn replace_pyformat(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('%') {
        return sql.into();
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('s') {
            out.push('?');
            rest = tail;
        } else if let Some(close) = after.strip_prefix('(').and_then(|a| a.find(")s")) {
            out.push('?');
            rest = &after[1 + close + 2..];
        } else if let Some(tail) = after.strip_prefix('%') {
            out.push_str("%%");
            rest = tail;
        } else {
            out.push('%');
            rest = after;
        }
    }
    out.push_str(rest);
    out.into()
}

fn normalize_tokens(tokens: Vec<Token>) -> Vec<Norm> {
    let mut out: Vec<Norm> = Vec::with_capacity(tokens.len());
    let mut iter = tokens.into_iter().peekable();
    while let Some(token) = iter.next() {
        let norm = match token {
            Token::Whitespace(Whitespace::Space | Whitespace::Newline | Whitespace::Tab)
            | Token::Whitespace(_)
            | Token::EOF => continue,
            Token::Word(word) => {
                let keyword = word.quote_style.is_none() && is_keyword(&word.value);
                let text = match (word.quote_style, keyword) {
                    (Some(q), _) => format!("{q}{}{}", word.value, closing_quote(q)),
                    (None, true) => word.value.to_ascii_uppercase(),
                    (None, false) => word.value.to_ascii_lowercase(),
                };
                Norm::Word { text, keyword }
            }
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::Placeholder(_) => Norm::Param,
            Token::Colon if matches!(iter.peek(), Some(Token::Word(_))) && !prev_is_value(&out) => {
                iter.next();
                Norm::Param
            }
            Token::Minus | Token::Plus
                if matches!(iter.peek(), Some(Token::Number(..))) && !prev_is_value(&out) =>
            {
                continue;
            }
            other => Norm::Punct(other.to_string()),
        };
        out.push(norm);
    }
    out
}

/// Reserved words that shape a statement; every other word is an identifier or a function.
/// (sqlparser's own keyword list also holds words like `id` and `name`, which are columns.)
const KEYWORDS: &[&str] = &[
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COMMIT",
    "CONFLICT",
    "CREATE",
    "CROSS",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DO",
    "DROP",
    "ELSE",
    "END",
    "EXCEPT",
    "EXISTS",
    "EXPLAIN",
    "FALSE",
    "FETCH",
    "FIRST",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "ILIKE",
    "IN",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCKED",
    "NEXT",
    "NOT",
    "NOTHING",
    "NOWAIT",
    "NULL",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "OUTER",
    "RELEASE",
    "RETURNING",
    "RIGHT",
    "ROLLBACK",
    "ROW",
    "ROWS",
    "SAVEPOINT",
    "SELECT",
    "SET",
    "SHARE",
    "SHOW",
    "SKIP",
    "TABLE",
    "THEN",
    "TOP",
    "TRUE",
    "TRUNCATE",
    "UNION",
    "UPDATE",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
];

fn is_keyword(word: &str) -> bool {
    word.len() <= 9
        && KEYWORDS
            .binary_search(&word.to_ascii_uppercase().as_str())
            .is_ok()
}

fn closing_quote(open: char) -> char {
    match open {
        '[' => ']',
        other => other,
    }
}

/// Whether the last token ends a value, so a following `-` or `:` is an operator.
fn prev_is_value(out: &[Norm]) -> bool {
    match out.last() {
        Some(Norm::Param) => true,
        Some(Norm::Word { keyword, .. }) => !keyword,
        Some(Norm::Punct(p)) => p == ")" || p == "]",
        None => false,
    }
}

/// Collapses parameter lists: `IN (?, ?, ?)` → `IN (?)`, `VALUES (?, ?), (?, ?)` → `VALUES (?, ?)`,
/// `ARRAY[?, ?]` → `ARRAY[?]`.
fn collapse_lists(tokens: Vec<Norm>) -> Vec<Norm> {
    let mut out: Vec<Norm> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let after_keyword =
            |kw: &str| matches!(out.last(), Some(Norm::Word { text, keyword: true }) if text == kw);
        let open = match &tokens[i] {
            Norm::Punct(p) if p == "(" => ")",
            Norm::Punct(p) if p == "[" => "]",
            _ => "",
        };
        if !open.is_empty()
            && (after_keyword("IN") || after_keyword("ANY") || after_keyword("ARRAY"))
            && let Some(end) = param_list_end(&tokens, i, open)
        {
            out.push(tokens[i].clone());
            out.extend(first_item(&tokens, i).iter().cloned());
            out.push(tokens[end].clone());
            i = end + 1;
            continue;
        }
        if after_keyword("VALUES")
            && open == ")"
            && let Some(mut end) = param_list_end(&tokens, i, ")")
        {
            out.extend(tokens[i..=end].iter().cloned());
            // Further tuples of the same shape are dropped.
            while matches!(tokens.get(end + 1), Some(Norm::Punct(p)) if p == ",")
                && matches!(tokens.get(end + 2), Some(Norm::Punct(p)) if p == "(")
            {
                match param_list_end(&tokens, end + 2, ")") {
                    Some(next_end) => end = next_end,
                    None => break,
                }
            }
            i = end + 1;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// If `tokens[open]` starts a list holding only parameters (each optionally cast, `?::integer`)
/// and commas, the index of its close.
fn param_list_end(tokens: &[Norm], open: usize, close: &str) -> Option<usize> {
    let mut i = open + 1;
    loop {
        if tokens.get(i) != Some(&Norm::Param) {
            return None;
        }
        i += 1;
        while matches!(tokens.get(i), Some(Norm::Punct(p)) if p == "::")
            && matches!(tokens.get(i + 1), Some(Norm::Word { .. }))
        {
            i += 2;
        }
        match tokens.get(i) {
            Some(Norm::Punct(p)) if p == "," => i += 1,
            Some(Norm::Punct(p)) if p == close => return Some(i),
            _ => return None,
        }
    }
}

/// The tokens of a collapsed list: its first item, e.g. `?` or `?::integer`.
fn first_item(tokens: &[Norm], open: usize) -> &[Norm] {
    let mut end = open + 2;
    while matches!(tokens.get(end), Some(Norm::Punct(p)) if p == "::") {
        end += 2;
    }
    &tokens[open + 1..end]
}

fn render(tokens: &[Norm]) -> String {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        let text = match token {
            Norm::Word { text, .. } => text.as_str(),
            Norm::Param => "?",
            Norm::Punct(p) => p.as_str(),
        };
        if i > 0 && space_before(tokens, i) {
            out.push(' ');
        }
        out.push_str(text);
    }
    out
}

/// Spacing that reads like hand-written SQL: `count(*)`, `a.b`, `x::int`, `IN (?)`, `t (a, b)`.
fn space_before(tokens: &[Norm], i: usize) -> bool {
    fn punct(token: &Norm) -> &str {
        match token {
            Norm::Punct(p) => p,
            _ => "",
        }
    }
    let (prev, this) = (punct(&tokens[i - 1]), punct(&tokens[i]));
    if matches!(prev, "(" | "[" | "." | "::") || matches!(this, ")" | "]" | "," | ";" | "." | "::" | "[") {
        return false;
    }
    if this == "(" {
        // A function call glues to its name; a keyword or a table's column list does not.
        let function_name = matches!(&tokens[i - 1], Norm::Word { keyword: false, .. });
        let table_columns =
            i >= 2 && matches!(&tokens[i - 2], Norm::Word { text, keyword: true } if text == "INTO");
        return !function_name || table_columns;
    }
    true
}

fn shape(tokens: &[Norm], normalized: String) -> Statement {
    let word = |i: usize| match tokens.get(i) {
        Some(Norm::Word { text, keyword }) => Some((text.as_str(), *keyword)),
        _ => None,
    };
    let verb = tokens
        .iter()
        .find_map(|t| match t {
            Norm::Word { text, keyword: true } => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let mut tables: Vec<String> = Vec::new();
    let mut filter_columns: Vec<String> = Vec::new();
    let mut has_limit = false;
    let mut keyset = false;
    for (i, token) in tokens.iter().enumerate() {
        let Norm::Word { text, keyword: true } = token else {
            continue;
        };
        match text.as_str() {
            "FROM" | "JOIN" | "UPDATE" | "INTO" => {
                if let Some(name) = qualified_name(tokens, i + 1) {
                    push_unique(&mut tables, name);
                }
            }
            "LIMIT" | "FETCH" | "TOP" => has_limit = true,
            _ => {}
        }
    }
    for (i, token) in tokens.iter().enumerate() {
        let Norm::Punct(op) = token else { continue };
        let compares_param = matches!(tokens.get(i + 1), Some(Norm::Param));
        if !compares_param || !matches!(op.as_str(), "=" | ">" | "<" | ">=" | "<=" | "<>" | "!=") {
            continue;
        }
        if let Some((column, false)) = word(i.wrapping_sub(1)) {
            push_unique(&mut filter_columns, column.to_owned());
            if matches!(op.as_str(), ">" | "<" | ">=" | "<=") {
                keyset = true;
            }
        }
    }
    for (i, token) in tokens.iter().enumerate() {
        if matches!(token, Norm::Word { text, keyword: true } if text == "IN")
            && let (Some((column, false)), Some(Norm::Punct(p)), Some(Norm::Param)) =
                (word(i.wrapping_sub(1)), tokens.get(i + 1), tokens.get(i + 2))
            && p == "("
        {
            push_unique(&mut filter_columns, column.to_owned());
        }
    }
    Statement {
        normalized,
        fingerprint: Fingerprint::default(),
        verb,
        tables,
        filter_columns,
        has_limit,
        keyset_pagination: keyset && has_limit,
    }
}

/// Reads `schema.table` (or `table`) starting at `start`.
fn qualified_name(tokens: &[Norm], start: usize) -> Option<String> {
    let Some(Norm::Word { text, keyword: false }) = tokens.get(start) else {
        return None;
    };
    let mut name = text.clone();
    let mut i = start + 1;
    while let (Some(Norm::Punct(dot)), Some(Norm::Word { text, .. })) = (tokens.get(i), tokens.get(i + 1)) {
        if dot != "." {
            break;
        }
        name.push('.');
        name.push_str(text);
        i += 2;
    }
    Some(name)
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real statement shapes as ORMs and drivers emit them, and what each must normalize to.
    #[test]
    fn normalizes_real_statement_shapes() {
        let cases = [
            (
                "SELECT * FROM users WHERE id = 42",
                "SELECT * FROM users WHERE id = ?",
            ),
            (
                "select *  from USERS\n where id=$1",
                "SELECT * FROM users WHERE id = ?",
            ),
            (
                "SELECT * FROM users WHERE id = ?",
                "SELECT * FROM users WHERE id = ?",
            ),
            (
                "SELECT * FROM users WHERE id = %s",
                "SELECT * FROM users WHERE id = ?",
            ),
            (
                "SELECT * FROM users WHERE id = %(id_1)s",
                "SELECT * FROM users WHERE id = ?",
            ),
            (
                "SELECT * FROM users WHERE id = :id",
                "SELECT * FROM users WHERE id = ?",
            ),
            (
                "SELECT * FROM users WHERE name = 'O''Brien'",
                "SELECT * FROM users WHERE name = ?",
            ),
            (
                "SELECT * FROM t WHERE id IN (1, 2, 3)",
                "SELECT * FROM t WHERE id IN (?)",
            ),
            (
                "SELECT * FROM t WHERE id IN ($1, $2)",
                "SELECT * FROM t WHERE id IN (?)",
            ),
            (
                "SELECT * FROM t WHERE id = ANY(ARRAY[1,2,3])",
                "SELECT * FROM t WHERE id = ANY (ARRAY[?])",
            ),
            (
                "SELECT * FROM t WHERE x = -5 AND y > 1.5e3",
                "SELECT * FROM t WHERE x = ? AND y > ?",
            ),
            ("SELECT a - 1 FROM t", "SELECT a - ? FROM t"),
            (
                "INSERT INTO orders (user_id, total) VALUES (1, 9.5), (2, 3.25), (3, 1)",
                "INSERT INTO orders (user_id, total) VALUES (?, ?)",
            ),
            (
                "UPDATE accounts SET balance = balance - 10 WHERE id = 7",
                "UPDATE accounts SET balance = balance - ? WHERE id = ?",
            ),
            (
                "SELECT count(*) FROM t -- trailing comment",
                "SELECT count(*) FROM t",
            ),
            ("/* app:web */ SELECT 1", "SELECT ?"),
            (
                r#"SELECT "Order"."Id" FROM public."Order" WHERE "Order"."Id" = 5"#,
                r#"SELECT "Order"."Id" FROM public."Order" WHERE "Order"."Id" = ?"#,
            ),
            ("SELECT $$dollar 'quoted'$$", "SELECT ?"),
            (
                "SELECT items.id, items.name FROM items WHERE items.order_id = %(param_1)s",
                "SELECT items.id, items.name FROM items WHERE items.order_id = ?",
            ),
            (
                "SELECT * FROM events WHERE created_at > '2024-01-01'::timestamptz ORDER BY id LIMIT 50",
                "SELECT * FROM events WHERE created_at > ?::timestamptz ORDER BY id LIMIT ?",
            ),
            ("SELECT 100 % 7", "SELECT ? % ?"),
        ];
        for (sql, expected) in cases {
            assert_eq!(normalize(sql).normalized, expected, "normalizing {sql:?}");
        }
    }

    #[test]
    fn keyword_list_is_sorted_for_binary_search() {
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sanitized_and_literal_forms_share_a_fingerprint() {
        let forms = [
            "SELECT * FROM items WHERE order_id = 17",
            "SELECT * FROM items WHERE order_id = ?",
            "select * from items where order_id = $1",
            "SELECT *\n  FROM items\n WHERE order_id = %(order_id_1)s",
        ];
        let first = normalize(forms[0]).fingerprint;
        assert_eq!(first.to_string().len(), 16);
        for form in forms {
            assert_eq!(normalize(form).fingerprint, first, "{form:?}");
        }
        assert_ne!(normalize("SELECT * FROM items WHERE id = 1").fingerprint, first);
    }

    #[test]
    fn reads_tables_filters_and_limits() {
        let s = normalize(
            "SELECT o.* FROM shop.orders o JOIN users u ON u.id = o.user_id WHERE o.status = 'x' AND o.id IN (1,2)",
        );
        assert_eq!(s.verb, "SELECT");
        assert_eq!(s.tables, ["shop.orders", "users"]);
        assert_eq!(s.filter_columns, ["status", "id"]);
        assert!(!s.has_limit);
        let page = normalize("SELECT * FROM events WHERE id > 500 ORDER BY id LIMIT 100");
        assert!(page.has_limit && page.keyset_pagination);
        assert!(!normalize("SELECT * FROM events WHERE id = 5 LIMIT 1").keyset_pagination);
    }

    #[test]
    fn literal_blind_keys_meet_only_where_normalization_does() {
        let key = |s| literal_blind_key(s).expect("plain ASCII");
        assert_eq!(key("SELECT 1"), key("SELECT 22"));
        assert_ne!(key("SELECT 1"), key("SELECT 1, 2"));
        assert_eq!(
            key("SELECT * FROM t WHERE id = 12 AND s = 'its'"),
            key("SELECT * FROM t WHERE id = 7 AND s = 'x'")
        );
        assert_ne!(
            key("SELECT * FROM t1"),
            key("SELECT * FROM t2"),
            "digits in identifiers are kept"
        );
        assert_ne!(key("SELECT a FROM t"), key("SELECT b FROM t"));
        assert_eq!(literal_blind_key(r"SELECT E'a\'b'"), None);
        let samples = [
            "SELECT * FROM items WHERE order_id = 17",
            "SELECT * FROM items WHERE order_id = 123456",
            "SELECT x::numeric(10,2) FROM t WHERE y > 1.5e3",
            "SELECT x::numeric(12,4) FROM t WHERE y > 7.25e3",
        ];
        for a in samples {
            for b in samples {
                if key(a) == key(b) {
                    assert_eq!(normalize(a), normalize(b), "{a:?} and {b:?} share a key");
                }
            }
        }
    }

    #[test]
    fn text_the_lexer_rejects_still_gets_a_stable_key() {
        let a = normalize("SELECT 'unterminated");
        assert_eq!(a, normalize("select   'unterminated"));
    }
}
