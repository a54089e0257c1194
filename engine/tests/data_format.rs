//! JSONL formats: detection of each format and every problem, by text.

mod data_support;

use data_support::{dataset_dir, write};
use engine::config::TrainConfig;
use engine::data::format::{read_jsonl, Example, Role};
use engine::data::{inspect_dataset, DataFormat, FormatKeys, Split, SplitSource};

fn problems_of(contents: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    write(&path, contents);
    let mut problems = Vec::new();
    read_jsonl(&path, "train.jsonl", &FormatKeys::default(), &mut problems);
    problems.iter().map(ToString::to_string).collect()
}

#[test]
fn detects_each_format_and_keeps_message_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.jsonl");
    write(
        &path,
        concat!(
            "\u{feff}{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\", \"name\": \"bot\"}]}\r\n",
            "\n",
            "   \n",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief\"}, {\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}}]}, {\"role\": \"tool\", \"content\": \"-3C\"}, {\"role\": \"assistant\", \"content\": \"Cold.\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"weather\"}}]}\n",
        ),
    );
    let mut problems = Vec::new();
    let contents = read_jsonl(&path, "chat.jsonl", &FormatKeys::default(), &mut problems);
    assert_eq!(problems, vec![]);
    assert_eq!(contents.format, Some(DataFormat::Chat));
    assert_eq!(contents.nonblank_lines, 2);
    assert_eq!(
        contents.records.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![1, 4]
    );
    let Example::Chat { messages, tools } = &contents.records[0].example else {
        panic!("not chat")
    };
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].role, Role::Assistant);
    assert_eq!(messages[1].content, "Hello");
    assert_eq!(
        messages[1].raw.get_attr("name").unwrap().as_str(),
        Some("bot")
    );
    assert!(tools.is_none());
    let Example::Chat { messages, tools } = &contents.records[1].example else {
        panic!("not chat")
    };
    assert_eq!(
        messages.iter().map(|m| m.role).collect::<Vec<_>>(),
        vec![
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant
        ]
    );
    assert_eq!(messages[2].content, "");
    assert_eq!(tools.as_ref().unwrap().len(), Some(1));

    write(&path, "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n");
    let contents = read_jsonl(&path, "c.jsonl", &FormatKeys::default(), &mut problems);
    assert_eq!(contents.format, Some(DataFormat::Completions));
    assert!(
        matches!(&contents.records[0].example, Example::Completions { prompt, completion, .. } if prompt == "2+2=" && completion == "4")
    );

    write(&path, "{\"text\": \"Once upon a time\"}");
    let contents = read_jsonl(&path, "t.jsonl", &FormatKeys::default(), &mut problems);
    assert_eq!(contents.format, Some(DataFormat::Text));
    assert!(
        matches!(&contents.records[0].example, Example::Text { text } if text == "Once upon a time")
    );
    assert_eq!(problems, vec![]);
}

#[test]
fn custom_key_names_like_mlx_lm_features() {
    let keys = FormatKeys {
        prompt: "question".into(),
        completion: "answer".into(),
        ..FormatKeys::default()
    };
    let mut problems = Vec::new();
    let contents = engine::data::format::read_jsonl_bytes(
        b"{\"question\": \"Capital of France?\", \"answer\": \"Paris\"}\n{\"question\": \"Q\"}\n",
        "qa.jsonl",
        &keys,
        &mut problems,
    );
    assert_eq!(contents.format, Some(DataFormat::Completions));
    assert_eq!(contents.records.len(), 1);
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems, vec!["qa.jsonl:2: field \"answer\": missing"]);
}

#[test]
fn every_problem_is_reported_with_file_line_and_field() {
    let lines = [
        r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
        r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}, {"role": 3, "content": ""}]}"#,
        r#"{"messages": [{"role": "user", "content": "Hi",}]}"#,
        r#"["not", "an", "object"]"#,
        r#"{"messages": [{"role": "user", "content": ["parts"]}, {"content": "x"}, "text"]}"#,
        r#"{"messages": []}"#,
        r#"{"messages": {"role": "user"}}"#,
        r#"{"messages": [{"role": "user", "content": "Only a question"}]}"#,
        r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "   "}], "tools": {"name": "x"}}"#,
        r#"{"prompt": "Q", "completion": "A"}"#,
        r#"{"input": "Q", "output": "A"}"#,
        r#"{}"#,
        r#"{"text": 12}"#,
        r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "tools": [1]}"#,
    ];
    let problems = problems_of(lines.join("\n").as_bytes());
    assert_eq!(
        problems,
        vec![
            "train.jsonl:2: field \"messages[1].role\": expected one of system/user/assistant/tool, found \"bot\"",
            "train.jsonl:2: field \"messages[2].role\": expected one of system/user/assistant/tool, found a number",
            "train.jsonl:2: field \"messages[2].content\": is empty",
            "train.jsonl:3: invalid JSON at column 48: trailing comma",
            "train.jsonl:4: expected a JSON object, found an array",
            "train.jsonl:5: field \"messages[0].content\": expected a string, found an array",
            "train.jsonl:5: field \"messages[1].role\": missing",
            "train.jsonl:5: field \"messages[2]\": expected a message object, found a string",
            "train.jsonl:6: field \"messages\": is empty",
            "train.jsonl:7: field \"messages\": expected an array of messages, found an object",
            "train.jsonl:8: field \"messages\": no assistant message: there is nothing to learn from this conversation",
            "train.jsonl:9: field \"tools\": expected an array, found an object",
            "train.jsonl:9: field \"messages[1].content\": is empty",
            "train.jsonl:10: this line is in completions format but the file is in chat format (from line 1); one file holds one format",
            "train.jsonl:11: no \"messages\" (chat), \"prompt\"+\"completion\" (completions) or \"text\" (text) field; found fields \"input\", \"output\"",
            "train.jsonl:12: no \"messages\" (chat), \"prompt\"+\"completion\" (completions) or \"text\" (text) field; found an empty object",
            "train.jsonl:13: field \"text\": expected a string, found a number",
            "train.jsonl:14: field \"tools[0]\": expected an object, found a number",
        ]
    );
}

#[test]
fn utf8_errors_huge_lines_and_empty_files() {
    let mut contents = b"{\"text\": \"fine\"}\n{\"text\": \"caf".to_vec();
    contents.extend_from_slice(&[0xC3, 0x28]);
    contents.extend_from_slice(b"\"}\n");
    let huge = format!(
        "{{\"text\": \"{}\"}}\n",
        "a".repeat(engine::data::format::MAX_LINE_BYTES)
    );
    contents.extend_from_slice(huge.as_bytes());
    contents.extend_from_slice(b"{\"text\": \"after the huge line\"}\n");
    assert_eq!(
        problems_of(&contents),
        vec![
            "train.jsonl:2: not valid UTF-8 (at byte 14 of the line)".to_string(),
            format!(
                "train.jsonl:3: line is {} bytes, over the limit of 1048576 bytes",
                engine::data::format::MAX_LINE_BYTES + 12
            ),
        ]
    );
    assert_eq!(
        problems_of(b""),
        vec!["train.jsonl: the file holds no examples"]
    );
    assert_eq!(
        problems_of(b"\n  \n"),
        vec!["train.jsonl: the file holds no examples"]
    );
}

#[test]
fn folders_missing_files_and_mixed_formats_across_files() {
    let cfg = TrainConfig::default();
    let keys = FormatKeys::default();
    let text = "{\"text\": \"a\"}\n";
    let chat = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n";

    let (_dir, path) = dataset_dir(&[("valid.jsonl", text)]);
    let report = inspect_dataset(&path, &keys, &cfg);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(
        report.problems[0].to_string(),
        format!(
            "train.jsonl: file not found in {} (a dataset folder needs train.jsonl; valid.jsonl and test.jsonl are optional)",
            path.display()
        )
    );

    let missing = path.join("nope.jsonl");
    let report = inspect_dataset(&missing, &keys, &cfg);
    assert_eq!(
        report.problems[0].to_string(),
        format!("{}: no such file or folder", missing.display())
    );

    let (_dir, path) = dataset_dir(&[
        ("train.jsonl", chat),
        ("valid.jsonl", text),
        ("test.jsonl", ""),
    ]);
    let report = inspect_dataset(&path, &keys, &cfg);
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        vec![
            "valid.jsonl: in text format but train.jsonl is in chat format; all files of a dataset share one format",
            "test.jsonl: the file holds no examples",
        ]
    );
    assert_eq!(report.format, Some(DataFormat::Chat));

    // Valid files, serialized the way the server sends them to the UI.
    let (_dir, path) = dataset_dir(&[("train.jsonl", &text.repeat(3)), ("valid.jsonl", text)]);
    let report = inspect_dataset(&path, &keys, &cfg);
    assert!(report.is_valid());
    assert_eq!(report.split(Split::Train).examples, 3);
    assert_eq!(report.split(Split::Valid).examples, 1);
    assert_eq!(report.split(Split::Test).source, SplitSource::Missing);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["format"], "text");
    assert_eq!(
        json["splits"][1]["source"],
        serde_json::json!({"kind": "file", "name": "valid.jsonl"})
    );
    assert_eq!(
        json["splits"][2]["source"],
        serde_json::json!({"kind": "missing"})
    );
}

#[test]
fn a_single_file_is_split_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.jsonl");
    let lines: String = (0..50)
        .map(|i| format!("{{\"text\": \"example {i}\"}}\n"))
        .collect();
    write(&path, lines);
    let cfg = TrainConfig {
        split_fraction: 0.1,
        ..TrainConfig::default()
    };
    let report = inspect_dataset(&path, &FormatKeys::default(), &cfg);
    assert!(report.is_valid(), "{report}");
    assert_eq!(
        [Split::Train, Split::Valid, Split::Test].map(|s| report.split(s).examples),
        [40, 5, 5]
    );
    assert_eq!(
        report.split(Split::Valid).source,
        SplitSource::HeldOut {
            from: "mine.jsonl".into()
        }
    );
}
