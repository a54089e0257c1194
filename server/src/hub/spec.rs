//! What a user names to pull: `org/name`, optionally one GGUF file of the
//! repo (`org/name/file.gguf`) and a revision (`...@revision`: a branch, tag
//! or commit).

use std::fmt;

/// A parsed Hub model reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubSpec {
    /// `org/name`.
    pub repo: String,
    /// A branch, tag or commit; `None` means `main`.
    pub revision: Option<String>,
    /// The GGUF file to use, for GGUF repos; `None` for safetensors repos.
    pub file: Option<String>,
}

impl HubSpec {
    /// Parses `org/name[/path/file.gguf][@revision]`; the error says what is
    /// wrong with the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (path, revision) = match text.rsplit_once('@') {
            Some((path, revision)) => (path, Some(revision)),
            None => (text, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() < 2 {
            return Err(format!(
                "{text:?} is not a Hub repo id: write it as org/name (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)"
            ));
        }
        for part in &parts[..2] {
            check_repo_part(part).map_err(|why| format!("{text:?} is not a Hub repo id: {why}"))?;
        }
        let file = if parts.len() > 2 {
            let file = parts[2..].join("/");
            check_file(&file).map_err(|why| format!("{text:?}: {why}"))?;
            Some(file)
        } else {
            None
        };
        let revision = match revision {
            None => None,
            Some(revision) => {
                check_revision(revision).map_err(|why| format!("{text:?}: {why}"))?;
                Some(revision.to_string())
            }
        };
        Ok(Self {
            repo: format!("{}/{}", parts[0], parts[1]),
            revision,
            file,
        })
    }

    /// Parses `repo` with a separate optional `revision` (the form's and the
    /// API's two fields); a revision in both places is refused.
    pub fn parse_parts(repo: &str, revision: Option<&str>) -> Result<Self, String> {
        let mut spec = Self::parse(repo)?;
        if let Some(revision) = revision.map(str::trim).filter(|r| !r.is_empty()) {
            if spec.revision.is_some() {
                return Err("give the revision either after @ or in the revision field".into());
            }
            check_revision(revision).map_err(|why| format!("revision {revision:?}: {why}"))?;
            spec.revision = Some(revision.to_string());
        }
        Ok(spec)
    }

    /// Whether `text` reads as a repo id rather than a path or a registered
    /// name: two or more `/`-separated parts, not absolute or relative.
    pub fn looks_like(text: &str) -> bool {
        let text = text.trim();
        !text.starts_with('/')
            && !text.starts_with('.')
            && !text.starts_with('~')
            && text.contains('/')
            && Self::parse(text).is_ok()
    }

    /// The revision to ask for.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }
}

/// The same text `parse` reads: the name a pulled model is registered under.
impl fmt::Display for HubSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repo)?;
        if let Some(file) = &self.file {
            write!(f, "/{file}")?;
        }
        if let Some(revision) = &self.revision {
            write!(f, "@{revision}")?;
        }
        Ok(())
    }
}

/// The Hub's rule for user and repo names: letters, digits, `-`, `_`, `.`,
/// not starting or ending with `-`/`.`, no `--` or `..`, at most 96.
fn check_repo_part(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("an empty org or name".into());
    }
    if part.len() > 96 {
        return Err(format!("{part:?} is longer than 96 characters"));
    }
    if let Some(bad) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("{part:?} contains {bad:?}"));
    }
    if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
        return Err(format!("{part:?} starts or ends with - or ."));
    }
    if part.contains("--") || part.contains("..") {
        return Err(format!("{part:?} contains -- or .."));
    }
    Ok(())
}

fn check_file(file: &str) -> Result<(), String> {
    if !file.to_ascii_lowercase().ends_with(".gguf") {
        return Err(format!(
            "{file:?} is not a GGUF file name; after org/name only a .gguf file of the repo may follow"
        ));
    }
    for segment in file.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment.starts_with('.') {
            return Err(format!("{file:?} is not a file path inside a repo"));
        }
        if segment.chars().any(|c| c.is_control() || c == '\\') {
            return Err(format!("{file:?} contains a control character or \\"));
        }
    }
    Ok(())
}

fn check_revision(revision: &str) -> Result<(), String> {
    if revision.is_empty() {
        return Err("an empty revision after @".into());
    }
    if revision.len() > 200 {
        return Err("the revision is longer than 200 characters".into());
    }
    if let Some(bad) = revision
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!("the revision contains {bad:?}"));
    }
    if revision.contains("..") || revision.starts_with('/') || revision.ends_with('/') {
        return Err("the revision is not a branch, tag or commit name".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_file_and_revision_are_read_and_written_back() {
        let spec = HubSpec::parse("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
        assert_eq!(spec.repo, "HuggingFaceTB/SmolLM2-135M-Instruct");
        assert_eq!((spec.revision(), spec.file.as_deref()), ("main", None));

        let spec = HubSpec::parse(
            "Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf@refs/pr/3",
        )
        .unwrap();
        assert_eq!(spec.repo, "Qwen/Qwen2.5-0.5B-Instruct-GGUF");
        assert_eq!(
            spec.file.as_deref(),
            Some("qwen2.5-0.5b-instruct-q4_0.gguf")
        );
        assert_eq!(spec.revision(), "refs/pr/3");
        assert_eq!(
            spec.to_string(),
            "Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf@refs/pr/3"
        );
        let spec = HubSpec::parse_parts("org/name", Some("v1.0")).unwrap();
        assert_eq!(spec.to_string(), "org/name@v1.0");
    }

    #[test]
    fn bad_ids_say_what_is_wrong() {
        assert_eq!(
            HubSpec::parse("gpt2").unwrap_err(),
            "\"gpt2\" is not a Hub repo id: write it as org/name (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)"
        );
        assert_eq!(
            HubSpec::parse("org/na me").unwrap_err(),
            "\"org/na me\" is not a Hub repo id: \"na me\" contains ' '"
        );
        assert_eq!(
            HubSpec::parse("org/name/model.safetensors").unwrap_err(),
            "\"org/name/model.safetensors\": \"model.safetensors\" is not a GGUF file name; after org/name only a .gguf file of the repo may follow"
        );
        assert_eq!(
            HubSpec::parse("org/name/../x.gguf").unwrap_err(),
            "\"org/name/../x.gguf\": \"../x.gguf\" is not a file path inside a repo"
        );
        assert_eq!(
            HubSpec::parse("org/name@").unwrap_err(),
            "\"org/name@\": an empty revision after @"
        );
        assert_eq!(
            HubSpec::parse_parts("org/name@v1", Some("v2")).unwrap_err(),
            "give the revision either after @ or in the revision field"
        );
    }

    #[test]
    fn paths_and_names_are_not_repo_ids() {
        assert!(HubSpec::looks_like("org/name"));
        assert!(HubSpec::looks_like("org/name/f.gguf@main"));
        assert!(!HubSpec::looks_like("/models/org/name"));
        assert!(!HubSpec::looks_like("./org/name"));
        assert!(!HubSpec::looks_like("smollm2"));
        assert!(!HubSpec::looks_like("models/llama/weights"));
    }
}
