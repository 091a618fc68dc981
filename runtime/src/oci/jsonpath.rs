//! The JSON path ("process.user.uid", "mounts[2].source") of the value at a line and column of a JSON
//! text, so a type error in config.json names its field (serde_json reports only the position).

enum Frame {
    Object {
        key: Option<String>,
        expect_key: bool,
    },
    Array {
        index: usize,
    },
}

/// Byte offset of 1-based `line` and `column`.
fn offset(text: &str, line: usize, column: usize) -> usize {
    let mut off = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (off + column.saturating_sub(1)).min(text.len());
        }
        off += l.len();
    }
    text.len()
}

/// The path of the innermost value being read at (`line`, `column`); "" at the top level.
pub fn path_at(text: &str, line: usize, column: usize) -> String {
    let end = offset(text, line, column);
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end && i < bytes.len() {
        match bytes[i] {
            b'{' => stack.push(Frame::Object {
                key: None,
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b':' => {
                if let Some(Frame::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = false;
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                if let Some(Frame::Object {
                    key,
                    expect_key: true,
                }) = stack.last_mut()
                {
                    *key = Some(text.get(start..j.min(text.len())).unwrap_or("").to_string());
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    let mut out = String::new();
    for f in &stack {
        match f {
            Frame::Object { key: Some(k), .. } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_nested_fields() {
        let text =
            "{\n \"process\": {\"user\": {\"uid\": \"x\"}},\n \"mounts\": [{}, {\"source\": 1}]\n}";
        assert_eq!(super::path_at(text, 2, 32), "process.user.uid");
        assert_eq!(super::path_at(text, 3, 27), "mounts[1].source");
    }
}
