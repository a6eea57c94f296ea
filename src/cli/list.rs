//! `--queue` and `--core` values: a list of small numbers.

/// A list of small numbers: `2`, `0,1`, `0-3`, `0,2-3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct List(pub(crate) Vec<usize>);

impl List {
    pub(crate) fn first(&self) -> usize {
        self.0[0]
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

pub(crate) fn parse_list(s: &str) -> Result<List, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let num = |x: &str| -> Result<usize, String> {
            x.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n < 1 << 20)
                .ok_or_else(|| format!("'{x}' in '{s}' is not a number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("'{part}' in '{s}': the range runs backwards"));
                }
                v.extend(a..=b);
            }
            None => v.push(num(part)?),
        }
    }
    let mut sorted = v.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != v.len() {
        return Err(format!("'{s}' names an entry twice"));
    }
    if v.len() > 64 {
        return Err(format!("'{s}': at most 64 entries"));
    }
    Ok(List(v))
}
