use proptest::prelude::*;

use super::*;

fn file(path: &str, size: u64, key: u8) -> SourceEntry {
    SourceEntry {
        path: path.into(),
        kind: EntryKind::File,
        size,
        same_bytes_key: Some([key; 32]),
    }
}

fn dir(path: &str) -> SourceEntry {
    SourceEntry {
        path: path.into(),
        kind: EntryKind::Dir,
        size: 0,
        same_bytes_key: None,
    }
}

/// A table as a hostile publisher would write it: any entries, in the given order.
fn raw(entries: &[(EntryKind, &str, u64, u64)]) -> Vec<u8> {
    let table = FileTable {
        entries: entries
            .iter()
            .map(|&(kind, path, size, offset)| Entry {
                path: path.into(),
                kind,
                size,
                offset,
            })
            .collect(),
    };
    table.encode()
}

#[test]
fn identical_files_share_their_bytes_and_the_stream_follows_first_paths() {
    let table = FileTable::lay_out(vec![
        file("b/copy", 10, 7),
        file("a", 10, 7),
        file("c", 5, 8),
        file("empty", 0, 9),
        dir("z/empty dir"),
        SourceEntry {
            path: "run.sh".into(),
            kind: EntryKind::Executable,
            size: 3,
            same_bytes_key: None,
        },
    ])
    .unwrap();
    let paths: Vec<(&str, u64, u64)> = table
        .entries()
        .iter()
        .map(|e| (e.path.as_str(), e.size, e.offset))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("a", 10, 0),
            ("b/copy", 10, 0),
            ("c", 5, 10),
            ("empty", 0, 0),
            ("run.sh", 3, 15),
            ("z/empty dir", 0, 0),
        ]
    );
    assert_eq!(table.file_count(), 5);
    assert_eq!(table.total_size(), 28);
    let contents = table.contents();
    assert_eq!(
        contents,
        vec![
            Content {
                offset: 0,
                size: 10,
                entry: 0
            },
            Content {
                offset: 10,
                size: 5,
                entry: 2
            },
            Content {
                offset: 15,
                size: 3,
                entry: 4
            },
        ]
    );
    assert_eq!(FileTable::decode(&table.encode(), 18).unwrap(), table);
    // The stream must be exactly the distinct contents.
    assert!(matches!(
        FileTable::decode(&table.encode(), 19),
        Err(CollectionError::BadLayout(_))
    ));
    assert!(FileTable::decode(&table.encode(), 17).is_err());
}

#[test]
fn same_size_without_a_shared_key_is_stored_twice() {
    let table = FileTable::lay_out(vec![
        SourceEntry {
            same_bytes_key: None,
            ..file("a", 4, 0)
        },
        SourceEntry {
            same_bytes_key: None,
            ..file("b", 4, 0)
        },
        file("c", 4, 1),
        file("d", 4, 2),
    ])
    .unwrap();
    let offsets: Vec<u64> = table.entries().iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![0, 4, 8, 12]);
}

#[test]
fn an_empty_collection_is_valid() {
    let table = FileTable::lay_out(Vec::new()).unwrap();
    assert_eq!(table.encode(), vec![0, 0, 0, 0]);
    assert_eq!(FileTable::decode(&[0, 0, 0, 0], 0).unwrap().file_count(), 0);
}

#[test]
fn unsafe_components_are_refused() {
    for path in [
        "..",
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a//b",
        "a/",
        "",
        ".",
        "a/./b",
        "a\\b",
        "..\\escape",
        "C:",
        "CON",
        "dir/nul.txt",
        "bell\u{7}",
        "new\nline",
        "nul\0byte",
        "esc\u{1b}[31m",
        "invoice\u{202e}fdp.exe",
        "trailing.",
        "trailing ",
        "what?",
    ] {
        let bytes = raw(&[(EntryKind::File, path, 0, 0)]);
        let err = FileTable::decode(&bytes, 0).unwrap_err();
        assert!(
            matches!(err, CollectionError::UnsafeComponent { .. }),
            "{path:?}: {err}"
        );
        // Shared the same way, refused the same way.
        assert!(
            FileTable::lay_out(vec![file(path, 0, 0)]).is_err(),
            "{path:?}"
        );
    }
}

#[test]
fn names_with_spaces_and_letters_of_any_script_are_kept() {
    let path = "Dossier été/naïve файл 名前.txt";
    let table = FileTable::lay_out(vec![file(path, 3, 1)]).unwrap();
    assert_eq!(table.entries()[0].path, path);
}

#[test]
fn paths_alike_under_case_or_normalisation_are_refused() {
    for (first, second) in [
        ("README", "readme"),
        ("Dir/a", "dir/b"),
        ("caf\u{e9}", "cafe\u{301}"),
        ("\u{212b}", "\u{c5}"), // Angstrom sign and A with ring
        ("ﬁle", "file"),        // a ligature, folded by compatibility
    ] {
        let result = FileTable::lay_out(vec![file(first, 1, 1), file(second, 2, 2)]);
        assert!(
            matches!(result, Err(CollectionError::Collision { .. })),
            "{first:?} {second:?}: {result:?}"
        )
    }
}

#[test]
fn a_path_cannot_be_a_file_and_a_directory() {
    for sources in [
        vec![file("a", 1, 1), file("a/b", 1, 2)],
        vec![file("a", 1, 1), dir("a/b")],
        vec![file("A", 1, 1), file("a/b", 1, 2)],
    ] {
        let err = FileTable::lay_out(sources).unwrap_err();
        assert!(
            matches!(
                err,
                CollectionError::FileAsDirectory(_) | CollectionError::Collision { .. }
            ),
            "{err}"
        );
    }
    let err = FileTable::lay_out(vec![dir("d"), file("d/x", 1, 1)]).unwrap_err();
    assert_eq!(err, CollectionError::EmptyDirNotEmpty("d".into()));
}

#[test]
fn a_path_twice_or_out_of_order_is_refused() {
    let twice = raw(&[(EntryKind::File, "a", 0, 0), (EntryKind::File, "a", 0, 0)]);
    assert!(matches!(
        FileTable::decode(&twice, 0),
        Err(CollectionError::Unsorted(_))
    ));
    let unsorted = raw(&[(EntryKind::File, "b", 0, 0), (EntryKind::File, "a", 0, 0)]);
    assert!(matches!(
        FileTable::decode(&unsorted, 0),
        Err(CollectionError::Unsorted(_))
    ));
}

#[test]
fn layouts_that_do_not_tile_the_stream_are_refused() {
    use EntryKind::File;
    for (entries, stream_len) in [
        // Past the end.
        (vec![(File, "a", 10, 0)], 5),
        // A gap.
        (vec![(File, "a", 5, 0), (File, "b", 5, 6)], 11),
        // An overlap.
        (vec![(File, "a", 5, 0), (File, "b", 5, 3)], 8),
        // Same place, another length.
        (vec![(File, "a", 5, 0), (File, "b", 4, 0)], 5),
        // Not in first-path order.
        (vec![(File, "a", 5, 5), (File, "b", 5, 0)], 10),
        // An empty file somewhere.
        (vec![(File, "a", 0, 3)], 0),
        // Offset near u64::MAX.
        (vec![(File, "a", 5, 0), (File, "b", u64::MAX - 2, 5)], 10),
    ] {
        let bytes = raw(&entries);
        assert!(
            FileTable::decode(&bytes, stream_len).is_err(),
            "{entries:?} in {stream_len}"
        );
    }
}

#[test]
fn malformed_bytes_are_refused() {
    let good = raw(&[(EntryKind::File, "a", 1, 0)]);
    assert!(FileTable::decode(&good, 1).is_ok());
    for len in 0..good.len() {
        assert_eq!(
            FileTable::decode(&good[..len], 1),
            Err(CollectionError::Truncated),
            "{len}"
        );
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        FileTable::decode(&trailing, 1),
        Err(CollectionError::TrailingBytes)
    );
    let mut kind = good.clone();
    kind[4] = 3;
    assert_eq!(
        FileTable::decode(&kind, 1),
        Err(CollectionError::UnknownKind(3))
    );
    let mut utf8 = good;
    utf8[7] = 0xff;
    assert_eq!(FileTable::decode(&utf8, 1), Err(CollectionError::NotUtf8));
}

// ------------------------------------------------------------------ limits, at and over

#[test]
fn entry_count_at_the_limit_is_accepted_and_over_it_refused() {
    let at: Vec<SourceEntry> = (0..COLLECTION_ENTRIES_MAX)
        .map(|i| file(&format!("{i:06}"), 0, 0))
        .collect();
    let table = FileTable::lay_out(at).unwrap();
    assert_eq!(table.entries().len(), COLLECTION_ENTRIES_MAX);
    let mut over = table.encode();
    over[..4].copy_from_slice(&(COLLECTION_ENTRIES_MAX as u32 + 1).to_be_bytes());
    over.extend_from_slice(&raw(&[(EntryKind::File, "999999", 0, 0)])[4..]);
    assert_eq!(
        FileTable::decode(&over, 0),
        Err(CollectionError::TooManyEntries(
            COLLECTION_ENTRIES_MAX as u64 + 1
        ))
    );
}

#[test]
fn a_billion_entries_claimed_in_a_few_bytes_are_refused_at_once() {
    let mut bytes = 1_000_000_000u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&raw(&[(EntryKind::File, "a", 0, 0)])[4..]);
    assert_eq!(
        FileTable::decode(&bytes, 0),
        Err(CollectionError::TooManyEntries(1_000_000_000))
    );
    // Under the limit but more than the bytes hold: refused before reserving for them.
    let mut bytes = (COLLECTION_ENTRIES_MAX as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 30]);
    assert_eq!(
        FileTable::decode(&bytes, 0),
        Err(CollectionError::Truncated)
    );
}

#[test]
fn total_size_at_the_limit_is_accepted_and_over_it_refused() {
    // Two paths of one content: the stream holds it once, the disk twice.
    let half = COLLECTION_SIZE_MAX / 2;
    let at = raw(&[
        (EntryKind::File, "a", half, 0),
        (EntryKind::File, "b", half, 0),
    ]);
    assert_eq!(
        FileTable::decode(&at, half).unwrap().total_size(),
        COLLECTION_SIZE_MAX
    );
    let over = raw(&[
        (EntryKind::File, "a", half, 0),
        (EntryKind::File, "b", half, 0),
        (EntryKind::File, "c", 1, half),
    ]);
    assert_eq!(
        FileTable::decode(&over, half + 1),
        Err(CollectionError::TotalTooLarge)
    );
}

/// A path of exactly `len` bytes in components of at most 255 (about 200 each).
fn long_path(len: usize, first: char) -> String {
    let count = len / 200 + 1;
    let letters = len - (count - 1);
    let mut components: Vec<String> = (0..count)
        .map(|i| "x".repeat(letters / count + usize::from(i < letters % count)))
        .collect();
    components[0].replace_range(0..1, &first.to_string());
    components.join("/")
}

#[test]
fn path_length_at_the_limit_is_accepted_and_over_it_refused() {
    let at = long_path(PATH_LEN_MAX, 'a');
    assert_eq!(at.len(), PATH_LEN_MAX);
    assert!(FileTable::decode(&raw(&[(EntryKind::File, &at, 0, 0)]), 0).is_ok());
    let over = long_path(PATH_LEN_MAX + 1, 'a');
    assert_eq!(
        FileTable::decode(&raw(&[(EntryKind::File, &over, 0, 0)]), 0),
        Err(CollectionError::PathTooLong(PATH_LEN_MAX + 1))
    );
}

#[test]
fn path_depth_at_the_limit_is_accepted_and_over_it_refused() {
    let at = vec!["d"; PATH_DEPTH_MAX].join("/");
    assert!(FileTable::decode(&raw(&[(EntryKind::Dir, &at, 0, 0)]), 0).is_ok());
    let over = vec!["d"; PATH_DEPTH_MAX + 1].join("/");
    assert!(matches!(
        FileTable::decode(&raw(&[(EntryKind::Dir, &over, 0, 0)]), 0),
        Err(CollectionError::PathTooDeep(_))
    ));
}

#[test]
fn table_length_at_the_limit_is_accepted_and_over_it_refused() {
    // Empty directories of long paths until the encoding is exactly at the limit.
    let mut paths = Vec::new();
    let mut len = 4;
    let mut index = 0;
    while len < FILE_TABLE_LEN_MAX {
        let left = FILE_TABLE_LEN_MAX - len - ENTRY_HEAD_LEN;
        let path_len = if left <= 2 * PATH_LEN_MAX {
            left.min(PATH_LEN_MAX)
        } else {
            PATH_LEN_MAX
        };
        let mut path = format!("{index:05}");
        path.push_str(&long_path(path_len - 5, 'p'));
        paths.push(path);
        len += ENTRY_HEAD_LEN + path_len;
        index += 1;
    }
    let entries: Vec<(EntryKind, &str, u64, u64)> = paths
        .iter()
        .map(|p| (EntryKind::Dir, p.as_str(), 0, 0))
        .collect();
    let at = raw(&entries);
    assert_eq!(at.len(), FILE_TABLE_LEN_MAX);
    assert!(FileTable::decode(&at, 0).is_ok());
    let mut over = at;
    over.push(0);
    assert_eq!(
        FileTable::decode(&over, 0),
        Err(CollectionError::TableTooLong(FILE_TABLE_LEN_MAX + 1))
    );
}

// ------------------------------------------------------------------ properties

fn component() -> impl Strategy<Value = String> {
    // Few letters, both cases, some accents and spaces: collisions and dedup happen often.
    proptest::string::string_regex("[abAB é]{1,3}").unwrap()
}

fn source() -> impl Strategy<Value = SourceEntry> {
    (
        proptest::collection::vec(component(), 1..4),
        0u8..3,
        0u64..50,
        proptest::option::of(0u8..4),
    )
        .prop_map(|(components, kind, size, key)| {
            let kind = EntryKind::from_byte(kind).unwrap();
            SourceEntry {
                path: components.join("/"),
                kind,
                size,
                same_bytes_key: key.map(|k| [k; 32]),
            }
        })
}

proptest! {
    #[test]
    fn any_laid_out_tree_decodes_to_itself_and_tiles_its_stream(
        sources in proptest::collection::vec(source(), 0..12),
    ) {
        let Ok(table) = FileTable::lay_out(sources.clone()) else {
            return Ok(());
        };
        let contents = table.contents();
        let stream_len: u64 = contents.iter().map(|c| c.size).sum();
        prop_assert_eq!(FileTable::decode(&table.encode(), stream_len), Ok(table.clone()));
        let mut end = 0;
        for content in &contents {
            prop_assert_eq!(content.offset, end);
            end += content.size;
        }
        // Every file path is kept, and files with one key share one place.
        for entry in table.entries() {
            prop_assert!(sources.iter().any(|s| s.path == entry.path));
            prop_assert!(entry.path.split('/').all(is_safe_file_name));
        }
        // No two paths alike once folded.
        let folded: BTreeSet<String> = table.entries().iter().map(|e| fold(&e.path)).collect();
        prop_assert_eq!(folded.len(), table.entries().len());
    }

    #[test]
    fn any_bytes_decode_without_panic_and_only_canonically(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        stream_len in 0u64..100,
    ) {
        if let Ok(table) = FileTable::decode(&bytes, stream_len) {
            prop_assert_eq!(table.encode(), bytes);
        }
    }
}

/// Paths of `part`'s picked entries and of its contents' first paths.
fn part_paths(table: &FileTable, part: &Part) -> (Vec<String>, Vec<String>) {
    let picked = part
        .picked
        .iter()
        .map(|&i| table.entries()[i].path.clone())
        .collect();
    let contents = part
        .contents
        .iter()
        .map(|c| table.entries()[c.entry].path.clone())
        .collect();
    (picked, contents)
}

#[test]
fn a_part_fetches_the_chunks_of_its_files_and_keeps_the_neighbours_they_touch() {
    // Stream (chunks of 10): a 0..4, b 4..14, c 14..20, d 20..30; "copy" has c's bytes.
    let table = FileTable::lay_out(vec![
        file("a", 4, 1),
        file("b", 10, 2),
        file("c", 6, 3),
        file("d", 10, 4),
        file("sub/copy", 6, 3),
        dir("sub/empty"),
    ])
    .unwrap();
    let offsets: Vec<u64> = table.entries().iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![0, 4, 14, 20, 14, 0]);

    // "sub/copy" is picked: its bytes are c's, in chunk 1, which also holds b and c.
    let part = table.part(10, 3, |path| path.starts_with("sub/"));
    let (picked, contents) = part_paths(&table, &part);
    assert_eq!(picked, vec!["sub/copy", "sub/empty"]);
    assert_eq!(part.chunks.iter().collect::<Vec<_>>(), vec![1]);
    assert_eq!(contents, vec!["b", "c"]);

    // "d" alone fills chunk 2: nothing else is kept.
    let part = table.part(10, 3, |path| path == "d");
    let (_, contents) = part_paths(&table, &part);
    assert_eq!(part.chunks.iter().collect::<Vec<_>>(), vec![2]);
    assert_eq!(contents, vec!["d"]);

    // Nothing picked: nothing fetched.
    let part = table.part(10, 3, |_| false);
    assert!(part.picked.is_empty() && part.chunks.is_empty() && part.contents.is_empty());

    // Everything picked: every chunk and content.
    let part = table.part(10, 3, |_| true);
    assert!(part.chunks.is_full());
    assert_eq!(part.contents, table.contents());
}
