//! Names that become file or folder names in the data dir (datasets,
//! models, adapters). Whatever a user or a teammate types, the name must
//! stay one plain path component.

/// The longest name accepted, in bytes: well under the 255-byte file-name
/// limit of common file systems, with room for suffixes.
pub const MAX_NAME_BYTES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {0} bytes long; at most {MAX_NAME_BYTES} are allowed")]
    TooLong(usize),
    #[error("name contains {0:?}; path separators are not allowed")]
    Separator(char),
    #[error("name {0:?} refers to a folder, not a name")]
    DotName(String),
    #[error("name contains the control character U+{0:04X}")]
    Control(u32),
    #[error("name contains the invisible format character U+{0:04X} (bidi override, zero-width...), which makes a name read as another")]
    FormatControl(u32),
    #[error("name starts with '.' or '-', which hides the file or reads as an option")]
    LeadingMark,
}

/// Checks a user-given name and returns it trimmed of surrounding
/// whitespace. Refuses empty and over-long names, path separators (`/`,
/// `\`), `.` and `..`, control and invisible format characters, and a
/// leading `.` or `-`.
pub fn safe_name(name: &str) -> Result<String, NameError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName(name.to_string()));
    }
    if let Some(separator) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(NameError::Separator(separator));
    }
    // char::is_control covers C0, DEL and C1; NUL would cut the path short.
    if let Some(control) = name.chars().find(|c| c.is_control()) {
        return Err(NameError::Control(control as u32));
    }
    if let Some(format) = name.chars().find(|&c| is_format_control(c)) {
        return Err(NameError::FormatControl(format as u32));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(NameError::LeadingMark);
    }
    Ok(name.to_string())
}

/// Unicode's format characters (general category Cf) and the line and
/// paragraph separators: invisible, yet they reorder or hide what follows
/// (`abc\u{202e}gpj.exe` shows as "abcexe.jpg").
fn is_format_control(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_trimmed() {
        assert_eq!(safe_name("  pirate voice v2 ").unwrap(), "pirate voice v2");
        assert_eq!(safe_name("SmolLM2-135M.Q4_1").unwrap(), "SmolLM2-135M.Q4_1");
        assert_eq!(safe_name("données-été").unwrap(), "données-été");
    }

    #[test]
    fn traversal_and_junk_are_refused_with_a_reason() {
        assert_eq!(safe_name("").unwrap_err(), NameError::Empty);
        assert_eq!(safe_name("   ").unwrap_err(), NameError::Empty);
        assert_eq!(
            safe_name("..").unwrap_err(),
            NameError::DotName("..".into())
        );
        assert_eq!(safe_name("../etc").unwrap_err(), NameError::Separator('/'));
        assert_eq!(
            safe_name("a/../../b").unwrap_err(),
            NameError::Separator('/')
        );
        assert_eq!(
            safe_name("..\\windows").unwrap_err(),
            NameError::Separator('\\')
        );
        assert_eq!(
            safe_name("/etc/passwd").unwrap_err(),
            NameError::Separator('/')
        );
        assert_eq!(safe_name("a\0b").unwrap_err(), NameError::Control(0));
        assert_eq!(
            safe_name("line\nbreak").unwrap_err(),
            NameError::Control(10)
        );
        assert_eq!(
            safe_name("abc\u{202e}gpj.exe").unwrap_err(),
            NameError::FormatControl(0x202E)
        );
        for invisible in ['\u{200b}', '\u{2066}', '\u{feff}', '\u{e0041}', '\u{2028}'] {
            assert!(
                matches!(
                    safe_name(&format!("a{invisible}b")),
                    Err(NameError::FormatControl(_))
                ),
                "{invisible:?}"
            );
        }
        assert_eq!(safe_name(".hidden").unwrap_err(), NameError::LeadingMark);
        assert_eq!(safe_name("-rf").unwrap_err(), NameError::LeadingMark);
        assert_eq!(
            safe_name(&"x".repeat(101)).unwrap_err(),
            NameError::TooLong(101)
        );
        assert_eq!(
            safe_name("../x").unwrap_err().to_string(),
            "name contains '/'; path separators are not allowed"
        );
    }
}
