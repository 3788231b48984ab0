//! Turning a file name received from the network into one that is safe to create.
//!
//! A manifest's name comes from whoever published it. Used as a path unchanged it could
//! climb out of the download directory (`../../.bashrc`), be absolute (`/etc/passwd`),
//! open a device on Windows (`CON`, `nul.txt`), smuggle terminal escapes into a listing,
//! or simply fail to create. [`sanitize_file_name`] keeps the readable part of the name and
//! removes everything else; the caller joins the result to a directory the user chose.

use std::fmt;

/// Longest name produced, in bytes: the limit of ext4, XFS, APFS and NTFS (UTF-16 units
/// there, of which a UTF-8 byte count is never fewer).
pub(crate) const FILE_NAME_LEN_MAX: usize = 255;

/// Longest extension (with its dot) kept whole when a long name is shortened. Longer
/// "extensions" are more likely part of the name than a type suffix worth saving.
const EXTENSION_LEN_MAX: usize = 32;

/// Printable characters that Windows forbids in names and that several other file systems
/// (FAT, SMB shares, NTFS through WSL) refuse or mangle. `/` and `\` never get this far.
const FORBIDDEN_CHARS: &[char] = &['<', '>', ':', '"', '|', '?', '*'];

/// Unicode bidirectional controls: harmless to the file system but used to disguise a
/// name's extension in listings (`invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`).
const BIDI_CONTROLS: &[char] = &[
    '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}',
    '\u{2067}', '\u{2068}', '\u{2069}',
];

/// Device names Windows opens instead of a file, whatever the extension and case.
const WINDOWS_RESERVED_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Put in front of a reserved device name to make it an ordinary one.
const RESERVED_NAME_PREFIX: char = '_';

/// Why no safe name could be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileNameError {
    /// Nothing is left once path components, forbidden characters and trailing dots and
    /// spaces are removed (the name was empty, `.`, `..`, `dir/`, `???`, …).
    NothingUsable,
}

impl fmt::Display for FileNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileNameError::NothingUsable => write!(
                f,
                "the file name has nothing usable once path parts, control characters and \
                 characters invalid in file names are removed"
            ),
        }
    }
}

impl std::error::Error for FileNameError {}

/// Makes `untrusted` safe to use as one file name inside a directory the user chose.
///
/// It returns the sanitised name, changed as little as possible, and an error only when
/// nothing usable remains; a caller with an error can fall back to a name of its own
/// making (the content id, say). The rules, in order:
///
/// - only the last path component counts: everything up to the last `/` or `\` is dropped
///   (`../../escape` gives `escape`; trailing separators are ignored, so `dir/` gives `dir`);
/// - control characters (`\0`, `\n`, DEL, C1), bidirectional controls and `<>:"|?*` are
///   dropped;
/// - leading spaces and trailing dots and spaces are trimmed (Windows drops the trailing
///   ones itself, so two names would map to one file); a name of only dots and spaces,
///   `.` and `..` included, leaves nothing;
/// - the result is cut to [`FILE_NAME_LEN_MAX`] bytes at a character boundary, keeping a
///   short extension;
/// - a Windows device name (`CON`, `nul.txt`, `Com1.tar.gz`, …) gets a `_` in front.
///
/// The result is non-empty, at most [`FILE_NAME_LEN_MAX`] bytes, contains no separator, no
/// NUL and no control character, is not `.` or `..`, and so can never be absolute.
pub fn sanitize_file_name(untrusted: &str) -> Result<String, FileNameError> {
    let last_component = untrusted
        .split(['/', '\\'])
        .rfind(|component| !component.is_empty())
        .unwrap_or("");
    let kept: String = last_component.chars().filter(|&c| is_allowed(c)).collect();
    let trimmed = trim_name(&kept);
    if trimmed.is_empty() {
        return Err(FileNameError::NothingUsable);
    }
    let mut name = shorten(trimmed, FILE_NAME_LEN_MAX);
    if is_windows_reserved(&name) {
        name.insert(0, RESERVED_NAME_PREFIX);
        name = shorten(&name, FILE_NAME_LEN_MAX);
    }
    if name.is_empty() {
        // Unreachable: a trimmed non-empty name keeps at least its first character.
        return Err(FileNameError::NothingUsable);
    }
    debug_assert!(is_safe_file_name(&name), "{name:?}");
    Ok(name)
}

/// Whether `name` could be produced by [`sanitize_file_name`]'s guarantees: non-empty, at
/// most [`FILE_NAME_LEN_MAX`] bytes, one component, not `.` or `..`, no control character.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= FILE_NAME_LEN_MAX
        && name != "."
        && name != ".."
        && name.chars().all(is_allowed)
        && !is_windows_reserved(name)
        && !name.ends_with(['.', ' '])
}

fn is_allowed(c: char) -> bool {
    !c.is_control()
        && c != '/'
        && c != '\\'
        && !FORBIDDEN_CHARS.contains(&c)
        && !BIDI_CONTROLS.contains(&c)
}

/// Drops leading spaces and trailing dots and spaces.
fn trim_name(name: &str) -> &str {
    name.trim_start_matches(' ').trim_end_matches(['.', ' '])
}

/// Whether Windows would open a device for `name`: it looks at the part before the first
/// dot, ignoring trailing spaces and case.
fn is_windows_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    WINDOWS_RESERVED_NAMES
        .iter()
        .any(|reserved| stem.eq_ignore_ascii_case(reserved))
}

/// `name` cut to at most `max_len` bytes at a character boundary, keeping an extension of
/// up to [`EXTENSION_LEN_MAX`] bytes, then trimmed again so the cut cannot leave a
/// trailing dot or space.
fn shorten(name: &str, max_len: usize) -> String {
    if name.len() <= max_len {
        return name.to_owned();
    }
    let extension = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= EXTENSION_LEN_MAX => &name[dot..],
        _ => "",
    };
    let stem = &name[..name.len() - extension.len()];
    let stem = trim_name(prefix_within(stem, max_len - extension.len()));
    if stem.is_empty() {
        // Only dots and spaces were left before the extension: keep what the cut allows.
        return trim_name(prefix_within(name, max_len)).to_owned();
    }
    let mut out = String::with_capacity(stem.len() + extension.len());
    out.push_str(stem);
    out.push_str(extension);
    out
}

/// The longest prefix of `s` of at most `max_len` bytes that ends at a character boundary.
fn prefix_within(s: &str, max_len: usize) -> &str {
    let mut end = s.len().min(max_len);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(untrusted: &str) -> String {
        sanitize_file_name(untrusted).unwrap()
    }

    #[test]
    fn ordinary_names_are_unchanged() {
        for name in [
            "report.pdf",
            "archive.tar.gz",
            ".bashrc",
            "Ünïcødé 名前.txt",
            "a b c",
        ] {
            assert_eq!(ok(name), name);
        }
    }

    #[test]
    fn only_the_last_component_is_kept() {
        assert_eq!(ok("../../escape"), "escape");
        assert_eq!(ok("/etc/passwd"), "passwd");
        assert_eq!(ok("C:\\Windows\\system32\\evil.dll"), "evil.dll");
        assert_eq!(ok("..\\..\\x"), "x");
        assert_eq!(ok("dir/"), "dir");
        assert_eq!(ok("a/b\\c/d"), "d");
    }

    #[test]
    fn dot_names_and_empty_leave_nothing() {
        for name in [
            "", ".", "..", "...", " . . ", "/", "a/..", "../", "\\", "\0\n", "???",
        ] {
            assert_eq!(
                sanitize_file_name(name),
                Err(FileNameError::NothingUsable),
                "{name:?}"
            );
        }
    }

    #[test]
    fn control_and_forbidden_characters_are_dropped() {
        assert_eq!(ok("a\0b\nc\rd\u{7f}e\u{9b}f"), "abcdef");
        assert_eq!(ok("what<>:\"|?*.txt"), "what.txt");
        assert_eq!(ok("C:evil"), "Cevil");
        assert_eq!(ok("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
    }

    #[test]
    fn trailing_dots_and_spaces_and_leading_spaces_are_trimmed() {
        assert_eq!(ok("name. . "), "name");
        assert_eq!(ok("  name.txt"), "name.txt");
        assert_eq!(ok("file.txt...   "), "file.txt");
    }

    #[test]
    fn windows_device_names_are_prefixed() {
        for name in [
            "CON",
            "con",
            "Con.txt",
            "nul.tar.gz",
            "AUX",
            "prn.",
            "COM1",
            "com9.log",
            "LPT1",
            "lpt9",
            "COM¹",
            "CON .txt",
            "conin$",
        ] {
            let safe = ok(name);
            assert!(safe.starts_with('_'), "{name:?} gave {safe:?}");
            assert!(!is_windows_reserved(&safe));
        }
        for name in ["CONSOLE", "com10", "LPT", "icon", "nul_", "auxiliary.txt"] {
            assert_eq!(ok(name), name);
        }
    }

    #[test]
    fn long_names_are_cut_at_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.tar.gz", "é".repeat(200));
        let safe = ok(&long);
        assert!(safe.len() <= FILE_NAME_LEN_MAX);
        assert!(safe.ends_with(".gz"));
        assert!(safe.starts_with('é'));

        let no_extension = "x".repeat(1000);
        assert_eq!(ok(&no_extension), "x".repeat(FILE_NAME_LEN_MAX));

        // An "extension" too long to be one is cut like the rest.
        let long_suffix = format!("a.{}", "b".repeat(300));
        assert_eq!(ok(&long_suffix).len(), FILE_NAME_LEN_MAX);

        // A cut that lands after a dot does not leave it trailing.
        let dotted = format!("{}.{}", "a".repeat(254), "b".repeat(40));
        assert_eq!(ok(&dotted), "a".repeat(254));
    }

    #[test]
    fn a_long_reserved_name_stays_within_the_limit() {
        let name = format!("CON{}.txt", " ".repeat(300));
        let safe = ok(&name);
        assert!(safe.starts_with("_CON"));
        assert!(safe.ends_with(".txt"));
        assert!(safe.len() <= FILE_NAME_LEN_MAX);

        // The cut itself can expose a device name.
        let name = format!("CON{}x.txt", " ".repeat(300));
        let safe = ok(&name);
        assert!(safe.starts_with("_CON"), "{safe:?}");
        assert!(safe.len() <= FILE_NAME_LEN_MAX);
    }

    /// Strings rich in the characters the rules are about.
    fn hostile_name() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_owned()),
            Just("\\".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just(" ".to_owned()),
            Just("\0".to_owned()),
            Just("CON".to_owned()),
            Just("é".to_owned()),
            Just(":".to_owned()),
            "[a-z]{0,8}",
            any::<char>().prop_map(String::from),
            "\\PC{0,300}",
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn output_is_always_safe(untrusted in prop_oneof![hostile_name(), any::<String>()]) {
            if let Ok(name) = sanitize_file_name(&untrusted) {
                prop_assert!(!name.is_empty());
                prop_assert!(name.len() <= FILE_NAME_LEN_MAX, "{} bytes", name.len());
                prop_assert!(!name.contains(['/', '\\', '\0']));
                prop_assert!(name != "." && name != "..");
                prop_assert!(is_safe_file_name(&name), "{:?}", name);
                // Sanitising is idempotent: a safe name is left alone.
                prop_assert_eq!(sanitize_file_name(&name), Ok(name.clone()));
            }
        }
    }
}
