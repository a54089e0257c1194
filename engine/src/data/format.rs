//! mlx-lm's JSONL dataset formats, read and checked one file at a time.
//!
//! Each line is one JSON object in one of three shapes (mlx-lm's `LORA.md`):
//! chat `{"messages": [{"role", "content"}...], "tools"?: [...]}`, completions
//! `{"prompt", "completion"}` and text `{"text"}`. The key names can be
//! changed the way mlx-lm's `chat_feature`/`prompt_feature`/... do.
//!
//! Reading never stops at the first mistake: a person fixing a dataset wants
//! every problem at once, each with its file, line and field.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Lines longer than this are refused rather than parsed: one stray binary
/// file or a dump without newlines must not take the server's memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The shape of the examples in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    Chat,
    Completions,
    Text,
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataFormat::Chat => "chat",
            DataFormat::Completions => "completions",
            DataFormat::Text => "text",
        })
    }
}

/// The JSON keys of each format; mlx-lm's `chat_feature`, `prompt_feature`,
/// `completion_feature` and `text_feature`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FormatKeys {
    pub chat: String,
    pub prompt: String,
    pub completion: String,
    pub text: String,
}

impl Default for FormatKeys {
    fn default() -> Self {
        Self {
            chat: "messages".into(),
            prompt: "prompt".into(),
            completion: "completion".into(),
            text: "text".into(),
        }
    }
}

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        match text {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "tool" => Some(Role::Tool),
            _ => None,
        }
    }
}

/// One chat message: its role, its text and the whole object as written
/// (with `tool_calls`, `name`... and key order kept), which the chat template
/// receives unchanged.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    pub raw: minijinja::Value,
}

/// One valid example.
#[derive(Debug, Clone)]
pub enum Example {
    Chat {
        messages: Vec<ChatMessage>,
        /// The `tools` array, key order kept, for templates that list tools.
        tools: Option<minijinja::Value>,
    },
    Completions {
        prompt: String,
        completion: String,
        tools: Option<minijinja::Value>,
    },
    Text {
        text: String,
    },
}

impl Example {
    pub fn format(&self) -> DataFormat {
        match self {
            Example::Chat { .. } => DataFormat::Chat,
            Example::Completions { .. } => DataFormat::Completions,
            Example::Text { .. } => DataFormat::Text,
        }
    }
}

/// An example with the place it came from, so later stages (the chat
/// template, truncation) can still name the line.
#[derive(Debug, Clone)]
pub struct Record {
    pub file: String,
    pub line: usize,
    pub example: Example,
}

/// One thing wrong with a dataset. Displays as
/// `train.jsonl:17: field "messages[2].role": expected one of ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            line: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn line(file: &str, line: usize, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            ..Self::file(file, message)
        }
    }

    pub fn field(
        file: &str,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::line(file, line, message)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field \"{field}\"")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What one JSONL file held.
#[derive(Debug, Clone, Default)]
pub struct FileContents {
    /// The format of the file's first valid line; later lines must match it.
    pub format: Option<DataFormat>,
    pub records: Vec<Record>,
    /// Lines that held something (blank lines are skipped, as JSONL allows).
    pub nonblank_lines: usize,
}

/// Reads one JSONL file, appending every problem found to `problems`.
/// `name` is how the file is named in problems (usually its file name).
pub fn read_jsonl(
    path: &Path,
    name: &str,
    keys: &FormatKeys,
    problems: &mut Vec<Problem>,
) -> FileContents {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            problems.push(Problem::file(name, "file not found"));
            return FileContents::default();
        }
        Err(error) => {
            problems.push(Problem::file(name, format!("cannot open: {error}")));
            return FileContents::default();
        }
    };
    read_jsonl_from(BufReader::new(file), name, keys, problems)
}

/// [`read_jsonl`] over any reader (an upload in memory, a test buffer).
pub fn read_jsonl_from(
    mut reader: impl BufRead,
    name: &str,
    keys: &FormatKeys,
    problems: &mut Vec<Problem>,
) -> FileContents {
    let mut contents = FileContents::default();
    let mut first_format_line = 0;
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        let total = match read_line_limited(&mut reader, &mut buf, MAX_LINE_BYTES) {
            Ok(Some(total)) => total,
            Ok(None) => break,
            Err(error) => {
                problems.push(Problem::line(
                    name,
                    line_no + 1,
                    format!("read error: {error}"),
                ));
                break;
            }
        };
        line_no += 1;
        if total > MAX_LINE_BYTES {
            contents.nonblank_lines += 1;
            problems.push(Problem::line(
                name,
                line_no,
                format!("line is {total} bytes, over the limit of {MAX_LINE_BYTES} bytes"),
            ));
            continue;
        }
        let mut bytes = buf.as_slice();
        if line_no == 1 {
            // Editors on Windows like to start UTF-8 files with a byte order mark.
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                contents.nonblank_lines += 1;
                problems.push(Problem::line(
                    name,
                    line_no,
                    format!(
                        "not valid UTF-8 (at byte {} of the line)",
                        error.valid_up_to() + 1
                    ),
                ));
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        contents.nonblank_lines += 1;
        let Some(example) = parse_line(text, name, line_no, keys, problems) else {
            continue;
        };
        let format = example.format();
        match contents.format {
            None => {
                contents.format = Some(format);
                first_format_line = line_no;
            }
            Some(expected) if expected != format => {
                problems.push(Problem::line(
                    name,
                    line_no,
                    format!(
                        "this line is in {format} format but the file is in {expected} format (from line {first_format_line}); \
                         one file holds one format"
                    ),
                ));
                continue;
            }
            Some(_) => {}
        }
        contents.records.push(Record {
            file: name.to_string(),
            line: line_no,
            example,
        });
    }
    if contents.nonblank_lines == 0 && !problems.iter().any(|p| p.file == name) {
        problems.push(Problem::file(name, "the file holds no examples"));
    }
    contents
}

/// Reads one line (without its `\n` or `\r\n`) into `buf`, keeping at most
/// `limit + 1` bytes but consuming the whole line. Returns the line's full
/// length, or `None` at the end of input.
fn read_line_limited(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<usize>> {
    buf.clear();
    let mut total = 0;
    let mut saw_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            break;
        }
        saw_any = true;
        let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        let room = (limit + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        total += chunk.len();
        let used = chunk.len() + usize::from(found_newline);
        reader.consume(used);
        if found_newline {
            break;
        }
    }
    if !saw_any {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
        total -= 1;
    }
    Ok(Some(total))
}

/// serde_json appends " at line L column C" to its messages; a JSONL line is
/// always line 1 of its own document, so only the column is worth showing.
fn json_error_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    format!("invalid JSON at column {}: {message}", error.column())
}

fn type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Checks one line and turns it into an example; every problem is pushed.
fn parse_line(
    text: &str,
    file: &str,
    line: usize,
    keys: &FormatKeys,
    problems: &mut Vec<Problem>,
) -> Option<Example> {
    let json: Json = match serde_json::from_str(text) {
        Ok(json) => json,
        Err(error) => {
            problems.push(Problem::line(file, line, json_error_message(&error)));
            return None;
        }
    };
    let Json::Object(object) = &json else {
        problems.push(Problem::line(
            file,
            line,
            format!("expected a JSON object, found {}", type_name(&json)),
        ));
        return None;
    };
    let before = problems.len();
    let example = if object.contains_key(&keys.prompt) || object.contains_key(&keys.completion) {
        let prompt = required_text(object, &keys.prompt, file, line, problems);
        let completion = required_text(object, &keys.completion, file, line, problems);
        let tools = check_tools(object, file, line, problems);
        match (prompt, completion) {
            (Some(prompt), Some(completion)) => Some(Example::Completions {
                prompt,
                completion,
                tools: tools.then(|| ordered(text, "tools")).flatten(),
            }),
            _ => None,
        }
    } else if object.contains_key(&keys.chat) {
        parse_chat(object, text, file, line, keys, problems)
    } else if object.contains_key(&keys.text) {
        required_text(object, &keys.text, file, line, problems).map(|text| Example::Text { text })
    } else {
        let mut found: Vec<&str> = object.keys().map(String::as_str).collect();
        found.truncate(8);
        problems.push(Problem::line(
            file,
            line,
            format!(
                "no \"{}\" (chat), \"{}\"+\"{}\" (completions) or \"{}\" (text) field; found {}",
                keys.chat,
                keys.prompt,
                keys.completion,
                keys.text,
                if found.is_empty() {
                    "an empty object".to_string()
                } else {
                    format!(
                        "fields {}",
                        found
                            .iter()
                            .map(|k| format!("\"{k}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ));
        None
    };
    if problems.len() > before {
        return None;
    }
    example
}

/// A string field that must be present and hold more than whitespace.
fn required_text(
    object: &serde_json::Map<String, Json>,
    key: &str,
    file: &str,
    line: usize,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match object.get(key) {
        None => {
            problems.push(Problem::field(file, line, key, "missing"));
            None
        }
        Some(Json::String(text)) if text.trim().is_empty() => {
            problems.push(Problem::field(file, line, key, "is empty"));
            None
        }
        Some(Json::String(text)) => Some(text.clone()),
        Some(other) => {
            problems.push(Problem::field(
                file,
                line,
                key,
                format!("expected a string, found {}", type_name(other)),
            ));
            None
        }
    }
}

/// `tools`, when present, must be an array of objects. Returns whether the
/// example has tools to pass on.
fn check_tools(
    object: &serde_json::Map<String, Json>,
    file: &str,
    line: usize,
    problems: &mut Vec<Problem>,
) -> bool {
    match object.get("tools") {
        None | Some(Json::Null) => false,
        Some(Json::Array(tools)) => {
            for (index, tool) in tools.iter().enumerate() {
                if !tool.is_object() {
                    problems.push(Problem::field(
                        file,
                        line,
                        format!("tools[{index}]"),
                        format!("expected an object, found {}", type_name(tool)),
                    ));
                }
            }
            !tools.is_empty()
        }
        Some(other) => {
            problems.push(Problem::field(
                file,
                line,
                "tools",
                format!("expected an array, found {}", type_name(other)),
            ));
            false
        }
    }
}

/// The value of a top-level key parsed again as a template value: Python
/// keeps JSON key order and templates print tools and tool calls with
/// `tojson`, so order matters for matching HF's rendering.
fn ordered(text: &str, key: &str) -> Option<minijinja::Value> {
    let value: minijinja::Value = serde_json::from_str(text).ok()?;
    value.get_attr(key).ok().filter(|v| !v.is_undefined())
}

fn parse_chat(
    object: &serde_json::Map<String, Json>,
    text: &str,
    file: &str,
    line: usize,
    keys: &FormatKeys,
    problems: &mut Vec<Problem>,
) -> Option<Example> {
    let before = problems.len();
    let has_tools = check_tools(object, file, line, problems);
    let key = keys.chat.as_str();
    let messages = match object.get(key) {
        Some(Json::Array(messages)) if messages.is_empty() => {
            problems.push(Problem::field(file, line, key, "is empty"));
            return None;
        }
        Some(Json::Array(messages)) => messages,
        Some(other) => {
            problems.push(Problem::field(
                file,
                line,
                key,
                format!("expected an array of messages, found {}", type_name(other)),
            ));
            return None;
        }
        None => {
            problems.push(Problem::field(file, line, key, "missing"));
            return None;
        }
    };
    let mut checked = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let path = format!("{key}[{index}]");
        let Json::Object(message) = message else {
            problems.push(Problem::field(
                file,
                line,
                path,
                format!("expected a message object, found {}", type_name(message)),
            ));
            continue;
        };
        let role = match message.get("role") {
            Some(Json::String(role)) => match Role::parse(role) {
                Some(role) => Some(role),
                None => {
                    problems.push(Problem::field(
                        file,
                        line,
                        format!("{path}.role"),
                        format!("expected one of system/user/assistant/tool, found \"{role}\""),
                    ));
                    None
                }
            },
            Some(other) => {
                problems.push(Problem::field(
                    file,
                    line,
                    format!("{path}.role"),
                    format!(
                        "expected one of system/user/assistant/tool, found {}",
                        type_name(other)
                    ),
                ));
                None
            }
            None => {
                problems.push(Problem::field(
                    file,
                    line,
                    format!("{path}.role"),
                    "missing",
                ));
                None
            }
        };
        // An assistant turn that only calls tools may have no text.
        let calls_tools =
            matches!(message.get("tool_calls"), Some(Json::Array(calls)) if !calls.is_empty());
        let content = match message.get("content") {
            Some(Json::String(content)) if content.trim().is_empty() && !calls_tools => {
                problems.push(Problem::field(
                    file,
                    line,
                    format!("{path}.content"),
                    "is empty",
                ));
                None
            }
            Some(Json::String(content)) => Some(content.clone()),
            None | Some(Json::Null) if calls_tools => Some(String::new()),
            None => {
                problems.push(Problem::field(
                    file,
                    line,
                    format!("{path}.content"),
                    "missing",
                ));
                None
            }
            Some(other) => {
                problems.push(Problem::field(
                    file,
                    line,
                    format!("{path}.content"),
                    format!("expected a string, found {}", type_name(other)),
                ));
                None
            }
        };
        if let (Some(role), Some(content)) = (role, content) {
            checked.push((role, content));
        }
    }
    if problems.len() > before {
        return None;
    }
    if !checked.iter().any(|(role, _)| *role == Role::Assistant) {
        problems.push(Problem::field(
            file,
            line,
            key,
            "no assistant message: there is nothing to learn from this conversation",
        ));
        return None;
    }
    let raw = ordered(text, key)?;
    let messages = checked
        .into_iter()
        .enumerate()
        .map(|(index, (role, content))| {
            Ok(ChatMessage {
                role,
                content,
                raw: raw.get_item_by_index(index)?,
            })
        })
        .collect::<Result<Vec<_>, minijinja::Error>>()
        .ok()?;
    Some(Example::Chat {
        messages,
        tools: has_tools.then(|| ordered(text, "tools")).flatten(),
    })
}

/// [`read_jsonl`] over an upload held in memory, with the same limits.
pub fn read_jsonl_bytes(
    bytes: &[u8],
    name: &str,
    keys: &FormatKeys,
    problems: &mut Vec<Problem>,
) -> FileContents {
    read_jsonl_from(bytes, name, keys, problems)
}

impl ChatMessage {
    /// A message with only a role and text (completions become these).
    pub fn plain(role: Role, content: &str) -> Self {
        let name = match role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        Self {
            role,
            content: content.to_string(),
            raw: minijinja::context! { role => name, content => content },
        }
    }
}
