//! What the composer accepts at most, and the nesting counter that enforces
//! the depth limits before anything reaches mrml.
//!
//! Why limits at all: mrml parses and renders recursively, one stack frame
//! pair per nested element (measured: about 1,600 levels of block quotes
//! fill the 8 MB main-thread stack of a debug build; a 2 MB thread holds a
//! quarter of that),
//! and a stack overflow is not a panic but an abort of the whole process.
//! pulldown-cmark itself keeps its nesting on the heap, so its events are
//! where the issue's depth is measured, exactly (a `>` inside a code block
//! nests nothing) and with the line it comes from.
//!
//! Includes have their own limits: files that include each other
//! repeatedly, without a cycle, grow exponentially (21 small files made
//! 22 MB of HTML).

use crate::html::{self, Token};

/// Elements an issue may nest: Markdown's own (block quote, list, item,
/// emphasis, link, ...) and its raw HTML together. Real issues nest fewer
/// than 10; 100 leaves room for any hand-written HTML table layout while
/// keeping mrml (about 5 KB of stack per level in a debug build) far from
/// any stack, even the 2 MB of a runtime's worker thread.
pub(crate) const MAX_CONTENT_DEPTH: usize = 100;

/// Elements the layout and its partials may nest (MJML and HTML), on the
/// same grounds: a real layout nests about 10; the issue's content is
/// counted on its own on top of the `{{ content }}` placeholder's depth.
pub(crate) const MAX_LAYOUT_DEPTH: usize = 100;

/// `include_md` expansions in one issue, nested ones included. The corpus
/// uses one per issue; a hundred files pulled into one email is already
/// past anything a reader scrolls through.
pub(crate) const MAX_INCLUDES: usize = 100;

/// Bytes of Markdown an issue may expand to (the issue file and every
/// include). Gmail clips HTML past 102 KB; the largest corpus issue is
/// 11 KB; 2 MB is twenty times past clipping and still composes in
/// milliseconds.
pub(crate) const MAX_EXPANDED_BYTES: usize = 2 * 1024 * 1024;

/// Bytes of an MJML layout or partial file.
pub(crate) const MAX_LAYOUT_BYTES: usize = 1024 * 1024;

/// `mj-include` levels (a partial that includes a partial ...).
pub(crate) const MAX_LAYOUT_INCLUDE_DEPTH: usize = 8;

/// HTML elements without content: they open nothing.
const VOID: [&str; 14] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Counts open elements: the Markdown containers the caller reports, and
/// the raw HTML tags of the fragments it hands over. A raw tag left open
/// stays counted (mrml nests what follows inside it, so that is the depth
/// it sees); a closing tag closes back to its opening tag, if open.
#[derive(Debug, Default)]
pub(crate) struct Nesting {
    markdown: usize,
    raw: Vec<String>,
    limit: usize,
}

impl Nesting {
    /// A counter starting at `depth`, refusing more than `limit`.
    pub(crate) fn new(depth: usize, limit: usize) -> Nesting {
        Nesting {
            markdown: depth,
            raw: Vec::new(),
            limit,
        }
    }

    /// Open elements now.
    pub(crate) fn depth(&self) -> usize {
        self.markdown + self.raw.len()
    }

    /// `n` Markdown elements open; `Err` when that crosses the limit.
    pub(crate) fn open(&mut self, n: usize) -> Result<(), ()> {
        self.markdown += n;
        if self.depth() > self.limit {
            return Err(());
        }
        Ok(())
    }

    /// `n` Markdown elements close.
    pub(crate) fn close(&mut self, n: usize) {
        self.markdown = self.markdown.saturating_sub(n);
    }

    /// Counts the tags of a raw HTML fragment; `Err(offset)` with the offset
    /// of the tag that crosses the limit.
    pub(crate) fn html(&mut self, fragment: &str) -> Result<(), usize> {
        if !fragment.contains('<') {
            return Ok(());
        }
        for (token, range) in html::tokenize(fragment) {
            let Token::Tag(tag) = token else { continue };
            self.tag(&tag.name, tag.closing, tag.self_closing)
                .map_err(|()| range.start)?;
        }
        Ok(())
    }

    /// One tag.
    pub(crate) fn tag(&mut self, name: &str, closing: bool, self_closing: bool) -> Result<(), ()> {
        if closing {
            if let Some(i) = self.raw.iter().rposition(|n| n == name) {
                self.raw.truncate(i);
            }
            return Ok(());
        }
        if self_closing || VOID.contains(&name) {
            return Ok(());
        }
        self.raw.push(name.to_string());
        if self.depth() > self.limit {
            return Err(());
        }
        Ok(())
    }
}

/// The offset of the first Outlook conditional comment in `fragment`
/// that mrml's HTML tokenizer cannot read: it panics on one whose
/// condition has no closing `]`, or whose `]` is not followed by `>`,
/// `-->`, `>-->` or `><!-->` (e.g. `<![endif` left unfinished). Well-formed
/// ones (`<!--[if mso]>...<![endif]-->`) pass.
pub(crate) fn bad_conditional_comment(fragment: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = fragment[from..].find("<!") {
        let at = from + found;
        from = at + 2;
        let rest = &fragment[at..];
        // The prefixes in the order mrml's tokenizer tries them, with how
        // much of each it skips before reading the condition up to `]`.
        let skip = if rest.starts_with("<!--[if") {
            5
        } else if rest.starts_with("<![if") || rest.starts_with("<![endif]") {
            3
        } else if rest.starts_with("<!--<![endif") {
            7
        } else if rest.starts_with("<![endif") {
            return Some(at);
        } else {
            continue;
        };
        let Some(close) = rest[skip..].find(']') else {
            return Some(at);
        };
        let tail = &rest[skip + close + 1..];
        if ![">-->", "><!-->", "-->", ">"]
            .iter()
            .any(|t| tail.starts_with(t))
        {
            return Some(at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_comments_mrml_cannot_read_are_found() {
        assert_eq!(
            bad_conditional_comment(
                "<!--[if mso]><table><![endif]--> <!--[if !mso]><!-->x<!--<![endif]-->"
            ),
            None
        );
        assert_eq!(
            bad_conditional_comment("<!-- plain --> <!DOCTYPE html>"),
            None
        );
        assert_eq!(bad_conditional_comment("ok <!--<![endif\n\n foo"), Some(3));
        assert_eq!(bad_conditional_comment("<![endif x"), Some(0));
        assert_eq!(bad_conditional_comment("<![if IE]x"), Some(0));
    }

    #[test]
    fn raw_tags_nest_and_close_back_to_their_opening() {
        let mut n = Nesting::new(0, 3);
        assert_eq!(n.html("<div><p>a<br>b<img src=x /></p>"), Ok(()));
        assert_eq!(n.depth(), 1);
        // `</div>` closes the `<span>` left open inside it too.
        assert_eq!(n.html("<span>x</div>"), Ok(()));
        assert_eq!(n.depth(), 0);
        assert_eq!(n.html("<a><b><c><d>"), Err(9));
        let mut m = Nesting::new(2, 3);
        assert_eq!(m.open(1), Ok(()));
        assert_eq!(m.open(1), Err(()));
    }
}
