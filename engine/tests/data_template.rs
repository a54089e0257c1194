//! Chat templates render as transformers renders them. The expected texts
//! in data_fixtures/rendered.json come from Jinja2 set up as transformers
//! sets it up (data_fixtures/hf_render.py).

use engine::chat_template::{strftime, ChatTemplate, TemplateError};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data_fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture parsed straight into template values, keeping key order as
/// Python does (serde_json's own map would sort the keys).
fn ordered_fixture(name: &str) -> minijinja::Value {
    let path = format!("{}/tests/data_fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn renders_like_transformers() {
    let spec = fixture("templates.json");
    let rendered = fixture("rendered.json");
    let cases = spec["cases"].as_array().unwrap();
    let ordered_cases = ordered_fixture("templates.json").get_attr("cases").unwrap();
    assert_eq!(cases.len(), 10);
    for (index, (case, expected)) in cases.iter().zip(rendered.as_array().unwrap()).enumerate() {
        let ordered = ordered_cases.get_item_by_index(index).unwrap();
        let name = case["name"].as_str().unwrap();
        assert_eq!(expected["name"], name);
        let source = spec["templates"][case["template"].as_str().unwrap()]
            .as_str()
            .unwrap();
        let template = ChatTemplate::new(
            source,
            case["bos_token"].as_str(),
            case["eos_token"].as_str(),
        )
        .unwrap();
        let messages: Vec<minijinja::Value> = ordered
            .get_attr("messages")
            .unwrap()
            .try_iter()
            .unwrap()
            .collect();
        let tools = Some(ordered.get_attr("tools").unwrap()).filter(|t| !t.is_undefined());
        let result = template.render(
            &messages,
            tools.as_ref(),
            case["add_generation_prompt"].as_bool().unwrap(),
        );
        match (&expected["text"], &expected["error"]) {
            (Value::String(text), _) => assert_eq!(&result.unwrap(), text, "case {name}"),
            (_, Value::String(error)) => assert_eq!(
                result.unwrap_err().to_string(),
                format!("chat template line 1: the template raised an error: {error}"),
                "case {name}"
            ),
            _ => panic!("bad fixture for {name}"),
        }
    }
}

#[test]
fn errors_name_the_template_line() {
    let error = ChatTemplate::new(
        "{% for m in messages %}\n{{ m.content }\n{% endfor %}",
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(error.line, Some(2));
    assert_eq!(
        error.to_string(),
        "chat template line 2: syntax error: unexpected `}`, expected end of variable block"
    );

    let template = ChatTemplate::new(
        "{% for m in messages %}\n{% if m.role == 'tool' %}\n{{ raise_exception('no tools here') }}\n{% endif %}{{ m.content }}{% endfor %}",
        None,
        None,
    )
    .unwrap();
    let messages = [serde_json::json!({"role": "tool", "content": "x"})];
    assert_eq!(
        template.render(&messages, None, false).unwrap_err(),
        TemplateError {
            line: Some(3),
            message: "the template raised an error: no tools here".into()
        }
    );

    let template = ChatTemplate::new("a\nb {{ messages[0].content.nope() }}", None, None).unwrap();
    let error = template.render(&messages, None, false).unwrap_err();
    assert_eq!(error.line, Some(2));
    assert!(
        error.message.starts_with("unknown method"),
        "{}",
        error.message
    );
}

#[test]
fn strftime_formats_like_python() {
    // 2024-07-23 14:05:09 UTC, a Tuesday (Llama 3.1's date line uses "%d %b %Y").
    let t = 1_721_743_509;
    assert_eq!(strftime("%d %b %Y", t).unwrap(), "23 Jul 2024");
    assert_eq!(
        strftime("%A %a %B %m/%d/%y %H:%M:%S %I%p %j %%", t).unwrap(),
        "Tuesday Tue July 07/23/24 14:05:09 02PM 205 %"
    );
    assert_eq!(
        strftime("%Y-%m-%d %A", 951_782_400).unwrap(),
        "2000-02-29 Tuesday"
    );
    assert_eq!(strftime("%Y-%m-%d", -86_400).unwrap(), "1969-12-31");
    assert_eq!(
        strftime("%Q", t).unwrap_err().to_string(),
        "invalid operation: strftime_now: unsupported format specifier %Q"
    );
    let template = ChatTemplate::new("{{ strftime_now('%Y') | length }}", None, None).unwrap();
    assert_eq!(template.render::<Value>(&[], None, false).unwrap(), "4");
}
