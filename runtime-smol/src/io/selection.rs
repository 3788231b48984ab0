//! `get --only PATTERN`: which paths of a collection to download.
//!
//! A pattern is a shell-style glob on the path inside the collection (`*` stays within one
//! component, `**` crosses them, `{a,b}` and `[ab]` as in a shell). A path is picked when a
//! pattern matches it or one of its parent directories, so `--only docs` takes the whole
//! `docs/` directory and `--only '*.json'` every JSON file at the top.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Patterns given to `--only`, at most: a bound on what one command line may ask to match
/// against every path.
pub const PATTERNS_MAX: usize = 256;

/// The paths to download.
#[derive(Clone, Debug)]
pub struct Selection {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Selection {
    /// The selection of `patterns`; an error that names a pattern that is not a glob.
    pub fn new(patterns: &[String]) -> Result<Selection, String> {
        if patterns.len() > PATTERNS_MAX {
            return Err(format!(
                "{} patterns given to --only; at most {PATTERNS_MAX}",
                patterns.len()
            ));
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let trimmed = pattern.trim_matches('/');
            let glob = GlobBuilder::new(trimmed)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("--only '{pattern}' is not a valid pattern: {e}"))?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|e| format!("--only patterns: {e}"))?;
        Ok(Selection {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// Whether `path` (components joined by `/`) or one of its parents is matched.
    pub fn picks(&self, path: &str) -> bool {
        let mut prefix = path;
        loop {
            if self.set.is_match(prefix) {
                return true;
            }
            match prefix.rsplit_once('/') {
                Some((parent, _)) => prefix = parent,
                None => return false,
            }
        }
    }

    /// The patterns as given, for messages.
    pub fn describe(&self) -> String {
        self.patterns
            .iter()
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(patterns: &[&str], path: &str) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Selection::new(&patterns).unwrap().picks(path)
    }

    #[test]
    fn a_directory_pattern_picks_everything_beneath_it() {
        assert!(picks(&["docs"], "docs/a/b.txt"));
        assert!(picks(&["docs/"], "docs/readme"));
        assert!(!picks(&["docs"], "docsx/readme"));
        assert!(!picks(&["docs"], "src/docs"));
    }

    #[test]
    fn a_star_stays_in_one_component_and_two_stars_cross_them() {
        assert!(picks(&["*.json"], "config.json"));
        assert!(!picks(&["*.json"], "sub/config.json"));
        assert!(picks(&["**/*.json"], "sub/deeper/config.json"));
        assert!(picks(&["shard-0000[12].bin", "x"], "shard-00002.bin"));
        assert!(!picks(&["shard-0000[12].bin"], "shard-00003.bin"));
    }

    #[test]
    fn a_malformed_pattern_is_named_in_the_error() {
        let err = Selection::new(&["a[".to_string()]).unwrap_err();
        assert!(err.contains("--only 'a['"), "{err}");
        let many = vec!["a".to_string(); PATTERNS_MAX + 1];
        assert!(Selection::new(&many).is_err());
    }
}
