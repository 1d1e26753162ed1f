//! Formulas of derived sensors and alarm conditions (`formula = "volts * amps / 1000"`,
//! `enabled_when = "pump_running > 0.5"`): a small arithmetic language over other sensors' latest values.
//!
//! Numbers, sensor names (`volts`, or `` `tank-a level` `` for any other id), `+ - * / % ^`, comparisons
//! (`< <= > >= == !=`, 1 or 0), `and or not` (also `&& || !`), parentheses and the functions `abs min max avg sqrt
//! exp ln log10 floor ceil round clamp(x, lo, hi) if(cond, then, else)`. No variables, loops, strings or I/O: a
//! formula is parsed once into a tree of at most [`MAX_NODES`] nodes and evaluating it visits each node at most
//! once, so its cost is bounded by its length. A leaf: the config checks and the engine both use it.
//!
//! No crate fitted: evalexpr is AGPL from version 12 and a scripting language (assignment, strings, loops); exmex
//! has no functions of three or more arguments (`if`, `clamp`, `avg`) and no comparisons; fasteval and meval are
//! unmaintained since 2020 and 2017.

use std::fmt;

/// Longest formula accepted (characters).
pub const MAX_LEN: usize = 1000;
/// Most nodes in a formula's tree (numbers, names, operators, calls).
pub const MAX_NODES: usize = 256;
/// Deepest nesting of parentheses and operators.
const MAX_DEPTH: usize = 32;

/// Why a formula is not accepted: the column (1-based, in characters) and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {col}: {msg}")]
pub struct FormulaError {
    /// Where, counted in characters from 1.
    pub col: usize,
    /// What is wrong.
    pub msg: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Abs,
    Min,
    Max,
    Avg,
    Sqrt,
    Exp,
    Ln,
    Log10,
    Floor,
    Ceil,
    Round,
    Clamp,
    If,
}

impl Func {
    const ALL: [(&'static str, Func, usize, usize); 13] = [
        ("abs", Func::Abs, 1, 1),
        ("min", Func::Min, 1, usize::MAX),
        ("max", Func::Max, 1, usize::MAX),
        ("avg", Func::Avg, 1, usize::MAX),
        ("sqrt", Func::Sqrt, 1, 1),
        ("exp", Func::Exp, 1, 1),
        ("ln", Func::Ln, 1, 1),
        ("log10", Func::Log10, 1, 1),
        ("floor", Func::Floor, 1, 1),
        ("ceil", Func::Ceil, 1, 1),
        ("round", Func::Round, 1, 1),
        ("clamp", Func::Clamp, 3, 3),
        ("if", Func::If, 3, 3),
    ];
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Num(f64),
    /// Index into [`Formula::inputs`].
    Var(usize),
    Neg(Box<Node>),
    Not(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    text: String,
    root: Node,
    inputs: Vec<String>,
}

impl fmt::Display for Formula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn truth(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

impl Formula {
    /// Parse `text`.
    pub fn parse(text: &str) -> Result<Formula, FormulaError> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() > MAX_LEN {
            return Err(FormulaError {
                col: MAX_LEN + 1,
                msg: format!("longer than {MAX_LEN} characters"),
            });
        }
        let mut p = Parser {
            s: chars,
            i: 0,
            inputs: Vec::new(),
            nodes: 0,
            depth: 0,
        };
        p.skip_ws();
        if p.i == p.s.len() {
            return Err(p.err("empty formula"));
        }
        let root = p.or()?;
        p.skip_ws();
        if p.i < p.s.len() {
            return Err(p.err(format!("unexpected {:?}", p.s[p.i])));
        }
        Ok(Formula {
            text: text.to_string(),
            root,
            inputs: p.inputs,
        })
    }

    /// The sensors the formula reads, in order of first use.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// Evaluate with `values[i]` the value of `inputs()[i]`. Comparisons and logic give 1 or 0; a division by zero
    /// or `sqrt(-1)` gives a non-finite result, which validation then refuses.
    pub fn eval(&self, values: &[f64]) -> f64 {
        eval(&self.root, values)
    }
}

fn eval(n: &Node, v: &[f64]) -> f64 {
    match n {
        Node::Num(x) => *x,
        Node::Var(i) => v.get(*i).copied().unwrap_or(f64::NAN),
        Node::Neg(a) => -eval(a, v),
        Node::Not(a) => truth(eval(a, v) == 0.0),
        Node::Bin(op, a, b) => {
            let x = eval(a, v);
            // `and`/`or` look at the right side only when they need it.
            match op {
                Op::And => return truth(x != 0.0 && eval(b, v) != 0.0),
                Op::Or => return truth(x != 0.0 || eval(b, v) != 0.0),
                _ => {}
            }
            let y = eval(b, v);
            match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
                Op::Div => x / y,
                Op::Rem => x % y,
                Op::Pow => x.powf(y),
                Op::Lt => truth(x < y),
                Op::Le => truth(x <= y),
                Op::Gt => truth(x > y),
                Op::Ge => truth(x >= y),
                Op::Eq => truth(x == y),
                Op::Ne => truth(x != y),
                Op::And | Op::Or => unreachable!("handled above"),
            }
        }
        Node::Call(f, args) => {
            let arg = |i: usize| args.get(i).map_or(f64::NAN, |a| eval(a, v));
            match f {
                Func::If => {
                    if arg(0) != 0.0 {
                        arg(1)
                    } else {
                        arg(2)
                    }
                }
                Func::Abs => arg(0).abs(),
                Func::Sqrt => arg(0).sqrt(),
                Func::Exp => arg(0).exp(),
                Func::Ln => arg(0).ln(),
                Func::Log10 => arg(0).log10(),
                Func::Floor => arg(0).floor(),
                Func::Ceil => arg(0).ceil(),
                Func::Round => arg(0).round(),
                Func::Clamp => {
                    let (x, lo, hi) = (arg(0), arg(1), arg(2));
                    if lo <= hi {
                        x.clamp(lo, hi)
                    } else {
                        f64::NAN
                    }
                }
                Func::Min | Func::Max | Func::Avg => {
                    let all = args.iter().map(|a| eval(a, v));
                    match f {
                        // A NaN argument makes the result NaN (f64::min would drop it and hide a fault).
                        Func::Min => all.fold(f64::INFINITY, |m, x| {
                            if x.is_nan() || m.is_nan() {
                                f64::NAN
                            } else {
                                m.min(x)
                            }
                        }),
                        Func::Max => all.fold(f64::NEG_INFINITY, |m, x| {
                            if x.is_nan() || m.is_nan() {
                                f64::NAN
                            } else {
                                m.max(x)
                            }
                        }),
                        _ => all.sum::<f64>() / args.len() as f64,
                    }
                }
            }
        }
    }
}

struct Parser {
    s: Vec<char>,
    i: usize,
    inputs: Vec<String>,
    nodes: usize,
    depth: usize,
}

impl Parser {
    fn err(&self, msg: impl Into<String>) -> FormulaError {
        FormulaError {
            col: self.i + 1,
            msg: msg.into(),
        }
    }

    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_whitespace()) {
            self.i += 1;
        }
    }

    fn node(&mut self, n: Node) -> Result<Node, FormulaError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.err(format!("more than {MAX_NODES} terms")));
        }
        Ok(n)
    }

    /// Consume `tok` (after whitespace) if it is next; words must not run on into a name.
    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        let t: Vec<char> = tok.chars().collect();
        if self.s.len() < self.i + t.len() || self.s[self.i..self.i + t.len()] != t[..] {
            return false;
        }
        let word = t[0].is_alphabetic();
        if word
            && self
                .s
                .get(self.i + t.len())
                .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            return false;
        }
        // `<` is not `<=`, `=` alone is not `==`.
        if matches!(tok, "<" | ">" | "!") && self.s.get(self.i + 1) == Some(&'=') {
            return false;
        }
        self.i += t.len();
        true
    }

    fn bin(&mut self, op: Op, a: Node, b: Node) -> Result<Node, FormulaError> {
        self.node(Node::Bin(op, Box::new(a), Box::new(b)))
    }

    fn or(&mut self) -> Result<Node, FormulaError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH}")));
        }
        let mut a = self.and()?;
        while self.eat("||") || self.eat("or") {
            let b = self.and()?;
            a = self.bin(Op::Or, a, b)?;
        }
        self.depth -= 1;
        Ok(a)
    }

    fn and(&mut self) -> Result<Node, FormulaError> {
        let mut a = self.cmp()?;
        while self.eat("&&") || self.eat("and") {
            let b = self.cmp()?;
            a = self.bin(Op::And, a, b)?;
        }
        Ok(a)
    }

    fn cmp(&mut self) -> Result<Node, FormulaError> {
        let a = self.sum()?;
        const OPS: [(&str, Op); 6] = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        for (tok, op) in OPS {
            if self.eat(tok) {
                let b = self.sum()?;
                return self.bin(op, a, b);
            }
        }
        self.skip_ws();
        if self.s.get(self.i) == Some(&'=') {
            return Err(self.err("`=` is not a comparison: write `==`"));
        }
        Ok(a)
    }

    fn sum(&mut self) -> Result<Node, FormulaError> {
        let mut a = self.product()?;
        loop {
            let op = if self.eat("+") {
                Op::Add
            } else if self.eat("-") {
                Op::Sub
            } else {
                return Ok(a);
            };
            let b = self.product()?;
            a = self.bin(op, a, b)?;
        }
    }

    fn product(&mut self) -> Result<Node, FormulaError> {
        let mut a = self.unary()?;
        loop {
            let op = if self.eat("*") {
                Op::Mul
            } else if self.eat("/") {
                Op::Div
            } else if self.eat("%") {
                Op::Rem
            } else {
                return Ok(a);
            };
            let b = self.unary()?;
            a = self.bin(op, a, b)?;
        }
    }

    fn unary(&mut self) -> Result<Node, FormulaError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH}")));
        }
        let n = if self.eat("-") {
            let a = self.unary()?;
            self.node(Node::Neg(Box::new(a)))?
        } else if self.eat("+") {
            self.unary()?
        } else if self.eat("!") || self.eat("not") {
            let a = self.unary()?;
            self.node(Node::Not(Box::new(a)))?
        } else {
            self.power()?
        };
        self.depth -= 1;
        Ok(n)
    }

    /// `a ^ b ^ c` is `a ^ (b ^ c)`; `-a ^ 2` is `-(a ^ 2)`.
    fn power(&mut self) -> Result<Node, FormulaError> {
        let a = self.primary()?;
        if self.eat("^") {
            let b = self.unary()?;
            return self.bin(Op::Pow, a, b);
        }
        Ok(a)
    }

    fn primary(&mut self) -> Result<Node, FormulaError> {
        self.skip_ws();
        let Some(&c) = self.s.get(self.i) else {
            return Err(self.err("the formula ends where a value was expected"));
        };
        if c == '(' {
            self.i += 1;
            let n = self.or()?;
            if !self.eat(")") {
                return Err(self.err("expected `)`"));
            }
            return Ok(n);
        }
        if c.is_ascii_digit() || c == '.' {
            let start = self.i;
            while self
                .s
                .get(self.i)
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                self.i += 1;
            }
            // An exponent: 1e3, 2.5E-4.
            if matches!(self.s.get(self.i), Some('e' | 'E')) {
                let save = self.i;
                self.i += 1;
                if matches!(self.s.get(self.i), Some('+' | '-')) {
                    self.i += 1;
                }
                if self.s.get(self.i).is_some_and(|c| c.is_ascii_digit()) {
                    while self.s.get(self.i).is_some_and(|c| c.is_ascii_digit()) {
                        self.i += 1;
                    }
                } else {
                    self.i = save;
                }
            }
            let text: String = self.s[start..self.i].iter().collect();
            return match text.parse::<f64>() {
                Ok(x) => self.node(Node::Num(x)),
                Err(_) => {
                    self.i = start;
                    Err(self.err(format!("{text:?} is not a number")))
                }
            };
        }
        if c == '`' {
            let start = self.i;
            self.i += 1;
            let from = self.i;
            while self.s.get(self.i).is_some_and(|c| *c != '`') {
                self.i += 1;
            }
            if self.i == self.s.len() {
                self.i = start;
                return Err(self.err("a `quoted name` is not closed"));
            }
            let name: String = self.s[from..self.i].iter().collect();
            self.i += 1;
            if name.is_empty() {
                self.i = start;
                return Err(self.err("empty `quoted name`"));
            }
            return self.var(name);
        }
        if c.is_alphabetic() || c == '_' {
            let start = self.i;
            while self
                .s
                .get(self.i)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_')
            {
                self.i += 1;
            }
            let word: String = self.s[start..self.i].iter().collect();
            if self.eat("(") {
                let Some(&(_, f, lo, hi)) = Func::ALL.iter().find(|(n, ..)| *n == word) else {
                    self.i = start;
                    let names: Vec<&str> = Func::ALL.iter().map(|(n, ..)| *n).collect();
                    return Err(self.err(format!(
                        "unknown function `{word}` (functions: {})",
                        names.join(", ")
                    )));
                };
                let mut args = Vec::new();
                if !self.eat(")") {
                    loop {
                        args.push(self.or()?);
                        if self.eat(")") {
                            break;
                        }
                        if !self.eat(",") {
                            return Err(self.err("expected `,` or `)`"));
                        }
                    }
                }
                if args.len() < lo || args.len() > hi {
                    self.i = start;
                    let want = if lo == hi {
                        format!("{lo}")
                    } else {
                        format!("at least {lo}")
                    };
                    return Err(self.err(format!(
                        "`{word}` takes {want} argument{}, not {}",
                        if lo == 1 && hi == 1 { "" } else { "s" },
                        args.len()
                    )));
                }
                return self.node(Node::Call(f, args));
            }
            if matches!(word.as_str(), "and" | "or" | "not") {
                self.i = start;
                return Err(self.err(format!("`{word}` where a value was expected")));
            }
            return self.var(word);
        }
        Err(self.err(format!("unexpected {c:?}")))
    }

    fn var(&mut self, name: String) -> Result<Node, FormulaError> {
        let idx = match self.inputs.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                self.inputs.push(name);
                self.inputs.len() - 1
            }
        };
        self.node(Node::Var(idx))
    }
}

#[cfg(test)]
mod tests;
