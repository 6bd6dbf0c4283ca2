//! The reader's language: the `lang` (and `dir`) of the HTML part, which
//! screen readers use to pick a voice and mail clients to pick hyphenation.

use std::fmt;

use language_tags::LanguageTag;

/// A BCP 47 language tag (`en`, `de-CH`, `ar`, `zh-Hant`), checked when it is
/// read so the layout never carries a malformed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language(LanguageTag);

impl Language {
    /// Reads a BCP 47 tag; the message says what is wrong with it.
    pub fn parse(tag: &str) -> Result<Language, String> {
        let parsed = LanguageTag::parse(tag.trim()).map_err(|e| {
            format!("`{tag}` is not a BCP 47 language tag ({e}); e.g. en, de, pt-BR")
        })?;
        parsed
            .validate()
            .map_err(|e| format!("`{tag}` is not a valid BCP 47 language tag ({e})"))?;
        Ok(Language(parsed))
    }

    /// The tag as written in `lang="..."`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// `rtl` for languages written right to left, else `ltr`.
    pub fn dir(&self) -> &'static str {
        if is_right_to_left(&self.0) {
            "rtl"
        } else {
            "ltr"
        }
    }
}

impl Default for Language {
    /// English, the default of `newsletter.language`.
    fn default() -> Self {
        Language::parse("en").expect("`en` is a language tag")
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An explicit script subtag decides (`az-Arab` is right to left, `ku-Latn`
/// is not); otherwise the language's usual script does. The lists are the
/// right-to-left scripts in Unicode's script metadata and the languages
/// whose default script is one of them.
fn is_right_to_left(tag: &LanguageTag) -> bool {
    const RTL_SCRIPTS: &[&str] = &[
        "adlm", "arab", "aran", "hebr", "mand", "mend", "nkoo", "rohg", "samr", "syrc", "thaa",
        "yezi",
    ];
    const RTL_LANGUAGES: &[&str] = &[
        "ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "nqo", "ps", "sd", "syr", "ug", "ur",
        "yi",
    ];
    if let Some(script) = tag.script() {
        return RTL_SCRIPTS.contains(&script.to_ascii_lowercase().as_str());
    }
    RTL_LANGUAGES.contains(&tag.primary_language().to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::Language;

    #[test]
    fn tags_and_their_direction() {
        for (tag, lang, dir) in [
            ("en", "en", "ltr"),
            ("de-CH", "de-CH", "ltr"),
            (" pt-BR ", "pt-BR", "ltr"),
            ("ar", "ar", "rtl"),
            ("he", "he", "rtl"),
            ("fa-IR", "fa-IR", "rtl"),
            ("az-Arab", "az-Arab", "rtl"),
            ("ku-Latn", "ku-Latn", "ltr"),
            ("zh-Hant", "zh-Hant", "ltr"),
        ] {
            let language = Language::parse(tag).unwrap_or_else(|e| panic!("{tag}: {e}"));
            assert_eq!((language.as_str(), language.dir()), (lang, dir), "{tag}");
        }
    }

    #[test]
    fn malformed_tags_are_refused() {
        for tag in ["", "english!", "en_US", "e", "\"><script>", "en-"] {
            assert!(Language::parse(tag).is_err(), "{tag:?} was accepted");
        }
    }
}
