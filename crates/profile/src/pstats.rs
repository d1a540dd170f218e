//! Python's `cProfile`/`profile` statistics (`python -m cProfile -o out.prof`,
//! `pstats.Stats.dump_stats`): a marshalled dict `{(file, line, function): (primitive calls,
//! calls, self seconds, inclusive seconds, {caller: (…)})}`.
//!
//! There are no stacks, only functions and their callers. Each (caller, function) edge becomes a
//! stack whose count is the function's self time through that caller, in microseconds, with the
//! caller's own main callers above it (the caller with the most inclusive time, followed up); a
//! function without callers a one-frame stack. That is enough to say which functions, and which
//! code calls them, burn the time — not which line, and not time spent idle.

use chokepoint_evidence::{Frame, Note, Position, Profile, ProfileBuilder};

use crate::problem;

/// Nesting deeper than this is not statistics.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug)]
enum Value {
    None,
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    refs: Vec<Option<Value>>,
}

type Result<T> = std::result::Result<T, (usize, String)>;

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err((self.at, format!("ends inside a value ({n} more bytes expected)")));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len(&mut self) -> Result<usize> {
        let at = self.at;
        usize::try_from(self.i32()?).map_err(|_| (at, "a negative length".to_owned()))
    }

    fn text(&mut self, n: usize) -> Result<Value> {
        Ok(Value::Str(String::from_utf8_lossy(self.take(n)?).into_owned()))
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        let at = self.at;
        if depth > MAX_DEPTH {
            return Err((at, "nested too deep".to_owned()));
        }
        let code = self.u8()?;
        let slot = (code & 0x80 != 0).then(|| {
            self.refs.push(None);
            self.refs.len() - 1
        });
        let value = match code & 0x7f {
            b'N' => Value::None,
            b'T' => Value::Int(1),
            b'F' => Value::Int(0),
            b'i' => Value::Int(i64::from(self.i32()?)),
            b'l' => {
                // Digits of 15 bits, least significant first; the sign is the count's.
                let n = self.i32()?;
                let mut value: i64 = 0;
                for i in 0..n.unsigned_abs().min(4) {
                    let b = self.take(2)?;
                    value |= i64::from(u16::from_le_bytes([b[0], b[1]])) << (15 * i);
                }
                self.take(2 * n.unsigned_abs().saturating_sub(4) as usize)?;
                Value::Int(if n < 0 { -value } else { value })
            }
            b'g' => {
                let b = self.take(8)?;
                Value::Float(f64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            }
            b'f' => {
                let n = usize::from(self.u8()?);
                let text = String::from_utf8_lossy(self.take(n)?).into_owned();
                Value::Float(text.parse().map_err(|_| (at, format!("a float {text:?}")))?)
            }
            b'u' | b't' | b'a' | b'A' | b's' => {
                let n = self.len()?;
                self.text(n)?
            }
            b'z' | b'Z' => {
                let n = usize::from(self.u8()?);
                self.text(n)?
            }
            b'(' | b'[' | b'<' | b'>' => {
                let n = self.len()?;
                self.seq(n, depth)?
            }
            b')' => {
                let n = usize::from(self.u8()?);
                self.seq(n, depth)?
            }
            b'{' => {
                let mut pairs = Vec::new();
                loop {
                    if self.bytes.get(self.at) == Some(&b'0') {
                        self.at += 1;
                        break;
                    }
                    let key = self.value(depth + 1)?;
                    let value = self.value(depth + 1)?;
                    pairs.push((key, value));
                }
                Value::Dict(pairs)
            }
            b'r' => {
                let index = self.len()?;
                match self.refs.get(index) {
                    Some(Some(value)) => value.clone(),
                    _ => return Err((at, format!("a reference to object {index}, not read yet"))),
                }
            }
            other => {
                return Err((
                    at,
                    format!("a marshal type {:?} statistics do not hold", other as char),
                ));
            }
        };
        if let Some(slot) = slot {
            self.refs[slot] = Some(value.clone());
        }
        Ok(value)
    }

    fn seq(&mut self, n: usize, depth: usize) -> Result<Value> {
        let mut items = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Seq(items))
    }
}

/// `(file, line, function)`.
fn function(key: &Value) -> Option<Frame> {
    let Value::Seq(parts) = key else { return None };
    match parts.as_slice() {
        [Value::Str(file), Value::Int(line), Value::Str(function)] => Some(Frame {
            function: function.clone(),
            // Built-ins are filed under `~`.
            file: if file == "~" { String::new() } else { file.clone() },
            line: u32::try_from(*line).unwrap_or(0),
            source: None,
        }),
        _ => None,
    }
}

/// Frames above a caller followed through main callers.
const MAX_CHAIN: usize = 24;

/// Inclusive seconds of a stats tuple `(cc, nc, tt, ct, …)`.
fn inclusive_seconds(value: &Value) -> f64 {
    match value {
        Value::Seq(parts) => match parts.get(3) {
            Some(Value::Float(ct)) => *ct,
            Some(Value::Int(ct)) => *ct as f64,
            _ => 0.0,
        },
        _ => 0.0,
    }
}

/// Self seconds of a stats tuple `(cc, nc, tt, ct, …)`.
fn self_seconds(value: &Value) -> Option<f64> {
    let Value::Seq(parts) = value else { return None };
    match parts.get(2)? {
        Value::Float(tt) => Some(*tt),
        Value::Int(tt) => Some(*tt as f64),
        _ => None,
    }
}

pub(crate) fn read(bytes: &[u8], source: &str) -> std::result::Result<Profile, Note> {
    let mut reader = Reader {
        bytes,
        at: 0,
        refs: Vec::new(),
    };
    let stats = reader.value(0).map_err(|(byte, message)| {
        problem(
            source,
            Some(Position::Byte { byte: byte as u64 }),
            format!("not cProfile statistics: {message}"),
        )
    })?;
    let Value::Dict(functions) = stats else {
        return Err(problem(
            source,
            None,
            "not cProfile statistics: expected a dict of functions",
        ));
    };
    let mut builder = ProfileBuilder::new("cProfile", false, 0.0);
    let thread = builder.thread("all threads");
    // Every function, its self time, and its callers with the time spent through each.
    let mut entries = Vec::with_capacity(functions.len());
    for (key, value) in &functions {
        let (Some(callee), Value::Seq(parts)) = (function(key), value) else {
            return Err(problem(
                source,
                None,
                "not cProfile statistics: a function entry of another shape",
            ));
        };
        let callee = builder.frame(callee);
        let mut callers = Vec::new();
        if let Some(Value::Dict(edges)) = parts.get(4) {
            for (caller, edge) in edges {
                if let Some(caller) = function(caller) {
                    callers.push((
                        builder.frame(caller),
                        self_seconds(edge).unwrap_or(0.0),
                        inclusive_seconds(edge),
                    ));
                }
            }
        }
        entries.push((callee, self_seconds(value).unwrap_or(0.0), callers));
    }
    // Each function's main caller (the most inclusive time through it) makes the stack above
    // an edge: enough to name the application code that calls a library.
    let main_caller: std::collections::HashMap<u32, u32> = entries
        .iter()
        .filter_map(|(callee, _, callers)| {
            callers
                .iter()
                .max_by(|a, b| a.2.total_cmp(&b.2))
                .map(|(caller, _, _)| (*callee, *caller))
        })
        .collect();
    let chain = |from: u32| {
        let mut stack = vec![from];
        let mut at = from;
        while let Some(&up) = main_caller.get(&at) {
            if stack.contains(&up) || stack.len() >= MAX_CHAIN {
                break;
            }
            stack.push(up);
            at = up;
        }
        stack.reverse();
        stack
    };
    let mut total_s = 0.0;
    for (callee, self_s, callers) in &entries {
        total_s += self_s;
        if callers.is_empty() {
            builder.add(thread, vec![*callee], (self_s * 1e6).round() as u64);
            continue;
        }
        for (caller, through_s, _) in callers {
            let mut stack = chain(*caller);
            stack.push(*callee);
            builder.add(thread, stack, (through_s * 1e6).round() as u64);
        }
    }
    Ok(builder.finish(total_s, 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_statistics_say_where() {
        let error = read(&[b'{', b')', 3, b'z', 9, b'a'], "t").expect_err("fails");
        assert!(matches!(error.position, Some(Position::Byte { .. })), "{error:?}");
    }

    #[test]
    fn hostile_nesting_is_refused_not_overflowed() {
        let bytes = vec![b'['; 10_000];
        assert!(read(&bytes, "t").is_err());
    }
}
