//! Tokeniser and parser for the Python expression subset stream maps use.
//!
//! The grammar follows Python's expression grammar (precedence, chained comparisons,
//! conditional expressions, comprehensions, slices, keyword arguments) but stops at
//! expressions: no statements, lambdas or walrus. An f-string is read as the concatenation of
//! its text and a call of the internal `__format__` built-in per replacement field. Names are
//! resolved later by [`super::compile`].

use super::ExprError;

/// Longest expression source accepted, in bytes.
const MAX_SOURCE: usize = 10_000;
/// Deepest nesting accepted, so a hostile `((((…` cannot overflow the stack.
const MAX_DEPTH: usize = 64;
/// Most levels in the parsed tree, counting the links of operator chains (`a + b + ...`),
/// call, subscript and attribute chains (`x[0][0]...`) and nested f-strings next to the
/// nesting above: evaluation walks the tree recursively, so its height bounds the stack.
pub(crate) const MAX_HEIGHT: usize = 96;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    Op(&'static str),
    End,
}

const OPS: [&str; 33] = [
    "**", "//", "==", "!=", "<=", ">=", "<<", ">>", "->", ":=", "+", "-", "*", "/", "%", "<", ">",
    "(", ")", "[", "]", "{", "}", ",", ":", ".", "=", "|", "&", "^", "~", "@", ";",
];

fn tokenize(src: &str) -> Result<Vec<Tok>, ExprError> {
    tokenize_at(src, 0)
}

/// [`tokenize`] of an expression inside `nesting` f-strings.
fn tokenize_at(src: &str, nesting: usize) -> Result<Vec<Tok>, ExprError> {
    if nesting > MAX_DEPTH {
        return Err(ExprError::syntax("f-strings are nested too deeply"));
    }
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    // Where the last string literal or f-string ended (`out.len()` then): another one right
    // after it joins it, as adjacent literals do in Python.
    let mut string_end: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() || c == b'\\' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        if c == b'#' {
            return Err(ExprError::syntax("comments are not supported"));
        }
        // f-strings, with an optional r prefix.
        let lower = |k: usize| bytes.get(i + k).map(u8::to_ascii_lowercase);
        let quote_at = |k: usize| matches!(bytes.get(i + k), Some(b'\'' | b'"'));
        let fstring = match (lower(0), lower(1)) {
            (Some(b'f'), _) if quote_at(1) => Some((1, false)),
            (Some(b'f'), Some(b'r')) | (Some(b'r'), Some(b'f')) if quote_at(2) => Some((2, true)),
            _ => None,
        };
        if let Some((prefix_len, raw)) = fstring {
            let (text, next) = string_literal(src, i + prefix_len, raw)?;
            let start = if string_end == Some(out.len()) {
                match out.pop() {
                    Some(Tok::Str(prev)) => Start::After(prev),
                    // The `)` closing an f-string: this one goes on inside its parentheses.
                    _ => Start::Within,
                }
            } else {
                Start::Fresh
            };
            fstring_tokens(&text, &mut out, start, nesting)?;
            string_end = Some(out.len());
            i = next;
            continue;
        }
        // String literals, with an optional r/u prefix.
        let (prefix_len, raw) = match (c, bytes.get(i + 1)) {
            (b'r' | b'R', Some(b'\'' | b'"')) => (1, true),
            (b'u' | b'U', Some(b'\'' | b'"')) => (1, false),
            (b'\'' | b'"', _) => (0, false),
            _ => (usize::MAX, false),
        };
        if prefix_len != usize::MAX {
            let (s, next) = string_literal(src, i + prefix_len, raw)?;
            // Adjacent literals concatenate, as in Python.
            if string_end == Some(out.len()) {
                match out.last_mut() {
                    Some(Tok::Str(prev)) => prev.push_str(&s),
                    // After an f-string: joined inside its parentheses.
                    _ => {
                        out.pop();
                        out.extend([Tok::Op("+"), Tok::Str(s), Tok::Op(")")]);
                    }
                }
            } else {
                out.push(Tok::Str(s));
            }
            string_end = Some(out.len());
            i = next;
            continue;
        }
        if c.is_ascii_digit() || c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let (tok, next) = number(src, i)?;
            out.push(tok);
            i = next;
            continue;
        }
        if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 {
            let start = i;
            while i < bytes.len()
                && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric() || bytes[i] >= 0x80)
            {
                i += 1;
            }
            out.push(Tok::Name(src[start..i].to_owned()));
            continue;
        }
        match OPS.iter().find(|op| src[i..].starts_with(**op)) {
            Some(op) => {
                out.push(Tok::Op(op));
                i += op.len();
            }
            None => {
                return Err(ExprError::syntax(format!(
                    "unexpected character `{}`",
                    &src[i..].chars().next().unwrap_or('?')
                )));
            }
        }
    }
    out.push(Tok::End);
    Ok(out)
}

/// How an f-string's tokens begin.
enum Start {
    /// On their own: `("" + ...`.
    Fresh,
    /// After a string literal it joins: `("literal" + ...`.
    After(String),
    /// Inside the parentheses of the f-string before it, whose `)` was taken off.
    Within,
}

/// The tokens of an f-string whose text (escapes decoded) is `text`: `("" + "text" +
/// __format__((expression), "spec", "conversion") + ...)`.
fn fstring_tokens(
    text: &str,
    out: &mut Vec<Tok>,
    start: Start,
    nesting: usize,
) -> Result<(), ExprError> {
    let pieces = super::format::fstring_pieces(text)
        .map_err(|e| ExprError::syntax(format!("f-string: {e}")))?;
    match start {
        Start::Fresh => out.extend([Tok::Op("("), Tok::Str(String::new())]),
        Start::After(prev) => out.extend([Tok::Op("("), Tok::Str(prev)]),
        Start::Within => {}
    }
    for piece in pieces {
        out.push(Tok::Op("+"));
        match piece {
            super::format::Piece::Text(t) => out.push(Tok::Str(t)),
            super::format::Piece::Field {
                what,
                conversion,
                spec,
            } => {
                out.push(Tok::Name("__format__".into()));
                out.push(Tok::Op("("));
                out.push(Tok::Op("("));
                let mut inner = tokenize_at(&what, nesting + 1)?;
                inner.pop(); // End
                out.extend(inner);
                out.push(Tok::Op(")"));
                out.push(Tok::Op(","));
                out.push(Tok::Str(spec));
                out.push(Tok::Op(","));
                out.push(Tok::Str(conversion.map(String::from).unwrap_or_default()));
                out.push(Tok::Op(")"));
            }
        }
    }
    out.push(Tok::Op(")"));
    Ok(())
}

fn number(src: &str, start: usize) -> Result<(Tok, usize), ExprError> {
    let bytes = src.as_bytes();
    let mut i = start;
    if src[i..].starts_with("0x") || src[i..].starts_with("0X") {
        i += 2;
        let s = i;
        while i < bytes.len() && (bytes[i].is_ascii_hexdigit() || bytes[i] == b'_') {
            i += 1;
        }
        let digits = src[s..i].replace('_', "");
        let v = i64::from_str_radix(&digits, 16)
            .map_err(|_| ExprError::syntax("invalid hexadecimal literal"))?;
        return Ok((Tok::Int(v), i));
    }
    let mut float = false;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        float = true;
        i += 1;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
            i += 1;
        }
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            float = true;
            i = j;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    let text = src[start..i].replace('_', "");
    let tok = if float {
        Tok::Float(
            text.parse()
                .map_err(|_| ExprError::syntax("invalid number literal"))?,
        )
    } else {
        Tok::Int(
            text.parse()
                .map_err(|_| ExprError::syntax("integer literal too large"))?,
        )
    };
    Ok((tok, i))
}

fn string_literal(src: &str, start: usize, raw: bool) -> Result<(String, usize), ExprError> {
    let quote = &src[start..start + 1];
    let triple: String = quote.repeat(3);
    let (delim, mut i) = if src[start..].starts_with(&triple) {
        (triple.as_str(), start + 3)
    } else {
        (quote, start + 1)
    };
    let mut out = String::new();
    loop {
        let rest = &src[i..];
        if rest.is_empty() {
            return Err(ExprError::syntax("unterminated string literal"));
        }
        if rest.starts_with(delim) {
            return Ok((out, i + delim.len()));
        }
        let c = rest.chars().next().expect("rest is not empty");
        if c == '\n' && delim.len() == 1 {
            return Err(ExprError::syntax("unterminated string literal"));
        }
        if c == '\\' {
            let next = rest[1..].chars().next();
            let Some(n) = next else {
                return Err(ExprError::syntax("unterminated string literal"));
            };
            if raw {
                out.push('\\');
                out.push(n);
                i += 1 + n.len_utf8();
                continue;
            }
            i += 1 + n.len_utf8();
            match n {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                '\\' | '\'' | '"' => out.push(n),
                '\n' => {}
                'x' | 'u' | 'U' => {
                    let len = match n {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex = src
                        .get(i..i + len)
                        .ok_or_else(|| ExprError::syntax("truncated escape"))?;
                    let code = u32::from_str_radix(hex, 16)
                        .map_err(|_| ExprError::syntax("invalid escape"))?;
                    out.push(
                        char::from_u32(code).ok_or_else(|| ExprError::syntax("invalid escape"))?,
                    );
                    i += len;
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            continue;
        }
        out.push(c);
        i += c.len_utf8();
    }
}

/// Keyword arguments of a call, in order.
type KwArgs = Vec<(String, Node)>;

/// Binary arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
}

/// Comparison operators (chained as in Python).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Is,
    IsNot,
}

/// A comprehension's `for … in … if …` clause.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    pub target: Target,
    pub iter: Node,
    pub conds: Vec<Node>,
}

/// What a comprehension binds: a name or a tuple of names.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Name(String),
    Slot(usize),
    Tuple(Vec<Target>),
}

/// A constant.
#[derive(Debug, Clone)]
pub(crate) enum Const {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// The syntax tree. `Name` is replaced during resolution.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Const(Const),
    Name(String),
    /// A record property read as a bare variable.
    Prop(String),
    /// A built-in variable, function or module.
    Global(super::eval::Global),
    /// A comprehension variable.
    Local(usize),
    Attr(Box<Node>, String),
    Call(Box<Node>, Vec<Node>, Vec<(String, Node)>),
    Index(Box<Node>, Box<Node>),
    Slice(Box<Node>, [Option<Box<Node>>; 3]),
    Neg(Box<Node>),
    Pos(Box<Node>),
    Not(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    Cmp(Box<Node>, Vec<(CmpOp, Node)>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    IfElse(Box<Node>, Box<Node>, Box<Node>),
    List(Vec<Node>),
    Tuple(Vec<Node>),
    Set(Vec<Node>),
    Dict(Vec<(Node, Node)>),
    ListComp(Box<Node>, Vec<Generator>),
    SetComp(Box<Node>, Vec<Generator>),
    DictComp(Box<Node>, Box<Node>, Vec<Generator>),
}

pub(crate) fn parse(src: &str) -> Result<Node, ExprError> {
    if src.len() > MAX_SOURCE {
        return Err(ExprError::syntax(format!(
            "expression is longer than {MAX_SOURCE} bytes"
        )));
    }
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        links: 0,
    };
    let node = p.expr_list_or_single()?;
    if p.peek() != &Tok::End {
        return Err(ExprError::syntax(format!(
            "unexpected {} after the expression",
            describe(p.peek())
        )));
    }
    Ok(node)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Name(n) => format!("`{n}`"),
        Tok::Int(i) => format!("`{i}`"),
        Tok::Float(f) => format!("`{f}`"),
        Tok::Str(_) => "string".into(),
        Tok::Op(o) => format!("`{o}`"),
        Tok::End => "end of expression".into(),
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    /// Links of the operator and postfix chains being built (see [`MAX_HEIGHT`]).
    links: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos]
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Name(n) if n == kw)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.next();
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), ExprError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(ExprError::syntax(format!(
                "expected `{op}`, found {}",
                describe(self.peek())
            )))
        }
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::syntax("expression is nested too deeply"));
        }
        Ok(())
    }

    /// One more link in a chain the caller is building; `open` counts the caller's links, which
    /// it gives back with [`Self::unlink`] when its chain is done.
    fn link(&mut self, open: &mut usize) -> Result<(), ExprError> {
        self.links += 1;
        *open += 1;
        if self.depth + self.links > MAX_HEIGHT {
            return Err(ExprError::syntax(format!(
                "expression is nested too deeply (more than {MAX_HEIGHT} levels of operators, \
                 calls and subscripts)"
            )));
        }
        Ok(())
    }

    fn unlink<T>(&mut self, open: usize, result: T) -> T {
        self.links -= open;
        result
    }

    /// `a, b` at the top level is a tuple, as in Python.
    fn expr_list_or_single(&mut self) -> Result<Node, ExprError> {
        let first = self.expr()?;
        if !self.is_op(",") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if self.at_closer() {
                break;
            }
            items.push(self.expr()?);
        }
        Ok(Node::Tuple(items))
    }

    fn at_closer(&self) -> bool {
        matches!(self.peek(), Tok::End) || self.is_op(")") || self.is_op("]") || self.is_op("}")
    }

    /// A full expression: the conditional expression level.
    fn expr(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        if self.is_kw("lambda") {
            return Err(ExprError::syntax("lambda is not supported"));
        }
        let body = self.or_expr()?;
        let out = if self.eat_kw("if") {
            let cond = self.or_expr()?;
            if !self.eat_kw("else") {
                return Err(ExprError::syntax(
                    "expected `else` in conditional expression",
                ));
            }
            let other = self.expr()?;
            Node::IfElse(Box::new(cond), Box::new(body), Box::new(other))
        } else {
            body
        };
        self.depth -= 1;
        Ok(out)
    }

    fn or_expr(&mut self) -> Result<Node, ExprError> {
        let mut open = 0;
        let result = self.or_chain(&mut open);
        self.unlink(open, result)
    }

    fn or_chain(&mut self, open: &mut usize) -> Result<Node, ExprError> {
        let mut left = self.and_expr()?;
        while self.eat_kw("or") {
            self.link(open)?;
            let right = self.and_expr()?;
            left = Node::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Node, ExprError> {
        let mut open = 0;
        let result = self.and_chain(&mut open);
        self.unlink(open, result)
    }

    fn and_chain(&mut self, open: &mut usize) -> Result<Node, ExprError> {
        let mut left = self.not_expr()?;
        while self.eat_kw("and") {
            self.link(open)?;
            let right = self.not_expr()?;
            left = Node::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Node, ExprError> {
        if self.eat_kw("not") {
            self.enter()?;
            let inner = self.not_expr()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.comparison()
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let op = match self.peek() {
            Tok::Op("==") => CmpOp::Eq,
            Tok::Op("!=") => CmpOp::Ne,
            Tok::Op("<") => CmpOp::Lt,
            Tok::Op("<=") => CmpOp::Le,
            Tok::Op(">") => CmpOp::Gt,
            Tok::Op(">=") => CmpOp::Ge,
            Tok::Name(n) if n == "in" => CmpOp::In,
            Tok::Name(n) if n == "is" => {
                self.next();
                return Some(if self.eat_kw("not") {
                    CmpOp::IsNot
                } else {
                    CmpOp::Is
                });
            }
            Tok::Name(n) if n == "not" => {
                if matches!(&self.toks[self.pos + 1], Tok::Name(m) if m == "in") {
                    self.next();
                    self.next();
                    return Some(CmpOp::NotIn);
                }
                return None;
            }
            _ => return None,
        };
        self.next();
        Some(op)
    }

    fn comparison(&mut self) -> Result<Node, ExprError> {
        let left = self.arith()?;
        let mut rest = Vec::new();
        while let Some(op) = self.cmp_op() {
            rest.push((op, self.arith()?));
        }
        if rest.is_empty() {
            Ok(left)
        } else {
            Ok(Node::Cmp(Box::new(left), rest))
        }
    }

    fn arith(&mut self) -> Result<Node, ExprError> {
        let mut open = 0;
        let result = self.arith_chain(&mut open);
        self.unlink(open, result)
    }

    fn arith_chain(&mut self, open: &mut usize) -> Result<Node, ExprError> {
        let mut left = self.term()?;
        loop {
            let op = if self.eat_op("+") {
                BinOp::Add
            } else if self.eat_op("-") {
                BinOp::Sub
            } else if self.is_op("|") || self.is_op("&") || self.is_op("^") {
                return Err(ExprError::syntax("bitwise operators are not supported"));
            } else {
                return Ok(left);
            };
            self.link(open)?;
            let right = self.term()?;
            left = Node::Bin(op, Box::new(left), Box::new(right));
        }
    }

    fn term(&mut self) -> Result<Node, ExprError> {
        let mut open = 0;
        let result = self.term_chain(&mut open);
        self.unlink(open, result)
    }

    fn term_chain(&mut self, open: &mut usize) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat_op("*") {
                BinOp::Mul
            } else if self.eat_op("/") {
                BinOp::Div
            } else if self.eat_op("//") {
                BinOp::FloorDiv
            } else if self.eat_op("%") {
                BinOp::Mod
            } else {
                return Ok(left);
            };
            self.link(open)?;
            let right = self.unary()?;
            left = Node::Bin(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.eat_op("-") {
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(match inner {
                Node::Const(Const::Int(i)) => Node::Const(Const::Int(-i)),
                Node::Const(Const::Float(f)) => Node::Const(Const::Float(-f)),
                other => Node::Neg(Box::new(other)),
            });
        }
        if self.eat_op("+") {
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Node::Pos(Box::new(inner)));
        }
        if self.is_op("~") {
            return Err(ExprError::syntax("bitwise operators are not supported"));
        }
        self.power()
    }

    fn power(&mut self) -> Result<Node, ExprError> {
        let base = self.postfix()?;
        if self.eat_op("**") {
            self.enter()?;
            let exp = self.unary()?;
            self.depth -= 1;
            return Ok(Node::Bin(BinOp::Pow, Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }

    fn postfix(&mut self) -> Result<Node, ExprError> {
        let mut open = 0;
        let result = self.postfix_chain(&mut open);
        self.unlink(open, result)
    }

    fn postfix_chain(&mut self, open: &mut usize) -> Result<Node, ExprError> {
        let mut node = self.atom()?;
        loop {
            if self.is_op(".") || self.is_op("(") || self.is_op("[") {
                self.link(open)?;
            }
            if self.eat_op(".") {
                match self.next() {
                    Tok::Name(n) => node = Node::Attr(Box::new(node), n),
                    t => {
                        return Err(ExprError::syntax(format!(
                            "expected an attribute name after `.`, found {}",
                            describe(&t)
                        )));
                    }
                }
            } else if self.eat_op("(") {
                self.enter()?;
                let (args, kwargs) = self.call_args()?;
                self.depth -= 1;
                node = Node::Call(Box::new(node), args, kwargs);
            } else if self.eat_op("[") {
                self.enter()?;
                node = self.subscript(node)?;
                self.depth -= 1;
            } else {
                return Ok(node);
            }
        }
    }

    fn call_args(&mut self) -> Result<(Vec<Node>, KwArgs), ExprError> {
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        while !self.eat_op(")") {
            if self.is_op("*") || self.is_op("**") {
                return Err(ExprError::syntax("argument unpacking is not supported"));
            }
            // An unclosed call (`range(`) ends in `End` with nothing after it.
            if let (Tok::Name(n), Some(Tok::Op("="))) =
                (self.peek().clone(), self.toks.get(self.pos + 1))
            {
                self.next();
                self.next();
                kwargs.push((n, self.expr()?));
            } else {
                if !kwargs.is_empty() {
                    return Err(ExprError::syntax(
                        "positional argument follows keyword argument",
                    ));
                }
                let arg = self.expr()?;
                if self.is_kw("for") {
                    // A generator expression as the only argument: `any(x for x in xs)`.
                    let gens = self.generators()?;
                    args.push(Node::ListComp(Box::new(arg), gens));
                } else {
                    args.push(arg);
                }
            }
            if !self.eat_op(",") {
                self.expect_op(")")?;
                break;
            }
        }
        Ok((args, kwargs))
    }

    fn subscript(&mut self, target: Node) -> Result<Node, ExprError> {
        let mut parts: [Option<Box<Node>>; 3] = [None, None, None];
        let mut is_slice = false;
        let mut idx = 0;
        loop {
            if self.is_op(":") {
                self.next();
                is_slice = true;
                idx += 1;
                if idx > 2 {
                    return Err(ExprError::syntax("too many `:` in slice"));
                }
                continue;
            }
            if self.eat_op("]") {
                break;
            }
            if parts[idx].is_some() {
                return Err(ExprError::syntax("expected `]`"));
            }
            parts[idx] = Some(Box::new(self.expr_list_or_single()?));
        }
        if is_slice {
            Ok(Node::Slice(Box::new(target), parts))
        } else {
            let [index, _, _] = parts;
            let index = index.ok_or_else(|| ExprError::syntax("empty subscript"))?;
            Ok(Node::Index(Box::new(target), index))
        }
    }

    fn generators(&mut self) -> Result<Vec<Generator>, ExprError> {
        let mut gens = Vec::new();
        while self.eat_kw("for") {
            let target = self.target()?;
            if !self.eat_kw("in") {
                return Err(ExprError::syntax("expected `in` in comprehension"));
            }
            let iter = self.or_expr()?;
            let mut conds = Vec::new();
            while self.eat_kw("if") {
                conds.push(self.or_expr_no_cond()?);
            }
            gens.push(Generator {
                target,
                iter,
                conds,
            });
        }
        Ok(gens)
    }

    fn or_expr_no_cond(&mut self) -> Result<Node, ExprError> {
        self.or_expr()
    }

    fn target(&mut self) -> Result<Target, ExprError> {
        let paren = self.eat_op("(");
        let mut names = Vec::new();
        loop {
            match self.next() {
                Tok::Name(n) => names.push(Target::Name(n)),
                t => {
                    return Err(ExprError::syntax(format!(
                        "expected a name after `for`, found {}",
                        describe(&t)
                    )));
                }
            }
            if !self.eat_op(",") {
                break;
            }
            if self.is_kw("in") || self.is_op(")") {
                break;
            }
        }
        if paren {
            self.expect_op(")")?;
        }
        if names.len() == 1 && !paren {
            Ok(names.pop().expect("one name"))
        } else {
            Ok(Target::Tuple(names))
        }
    }

    fn atom(&mut self) -> Result<Node, ExprError> {
        match self.next() {
            Tok::Int(i) => Ok(Node::Const(Const::Int(i))),
            Tok::Float(f) => Ok(Node::Const(Const::Float(f))),
            Tok::Str(s) => Ok(Node::Const(Const::Str(s))),
            Tok::Name(n) => Ok(match n.as_str() {
                "None" => Node::Const(Const::None),
                "True" => Node::Const(Const::Bool(true)),
                "False" => Node::Const(Const::Bool(false)),
                "and" | "or" | "not" | "in" | "is" | "if" | "else" | "for" | "lambda"
                | "import" | "yield" | "await" | "del" | "def" | "class" | "return" => {
                    return Err(ExprError::syntax(format!("unexpected keyword `{n}`")));
                }
                _ => Node::Name(n),
            }),
            Tok::Op("(") => {
                self.enter()?;
                let out = if self.eat_op(")") {
                    Node::Tuple(Vec::new())
                } else {
                    let first = self.expr()?;
                    if self.is_kw("for") {
                        let gens = self.generators()?;
                        self.expect_op(")")?;
                        Node::ListComp(Box::new(first), gens)
                    } else if self.eat_op(")") {
                        first
                    } else {
                        let mut items = vec![first];
                        while self.eat_op(",") {
                            if self.is_op(")") {
                                break;
                            }
                            items.push(self.expr()?);
                        }
                        self.expect_op(")")?;
                        Node::Tuple(items)
                    }
                };
                self.depth -= 1;
                Ok(out)
            }
            Tok::Op("[") => {
                self.enter()?;
                let out = if self.eat_op("]") {
                    Node::List(Vec::new())
                } else {
                    let first = self.expr()?;
                    if self.is_kw("for") {
                        let gens = self.generators()?;
                        self.expect_op("]")?;
                        Node::ListComp(Box::new(first), gens)
                    } else {
                        let mut items = vec![first];
                        while self.eat_op(",") {
                            if self.is_op("]") {
                                break;
                            }
                            items.push(self.expr()?);
                        }
                        self.expect_op("]")?;
                        Node::List(items)
                    }
                };
                self.depth -= 1;
                Ok(out)
            }
            Tok::Op("{") => {
                self.enter()?;
                let out = self.brace()?;
                self.depth -= 1;
                Ok(out)
            }
            t => Err(ExprError::syntax(format!("unexpected {}", describe(&t)))),
        }
    }

    fn brace(&mut self) -> Result<Node, ExprError> {
        if self.eat_op("}") {
            return Ok(Node::Dict(Vec::new()));
        }
        let first = self.expr()?;
        if self.eat_op(":") {
            let value = self.expr()?;
            if self.is_kw("for") {
                let gens = self.generators()?;
                self.expect_op("}")?;
                return Ok(Node::DictComp(Box::new(first), Box::new(value), gens));
            }
            let mut items = vec![(first, value)];
            while self.eat_op(",") {
                if self.is_op("}") {
                    break;
                }
                let k = self.expr()?;
                self.expect_op(":")?;
                let v = self.expr()?;
                items.push((k, v));
            }
            self.expect_op("}")?;
            return Ok(Node::Dict(items));
        }
        if self.is_kw("for") {
            let gens = self.generators()?;
            self.expect_op("}")?;
            return Ok(Node::SetComp(Box::new(first), gens));
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if self.is_op("}") {
                break;
            }
            items.push(self.expr()?);
        }
        self.expect_op("}")?;
        Ok(Node::Set(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python_precedence() {
        let n = parse("-2 ** 2").unwrap();
        assert!(matches!(n, Node::Neg(_)), "{n:?}");
        let n = parse("a if b else c if d else e").unwrap();
        let Node::IfElse(_, _, other) = n else {
            panic!("not a conditional")
        };
        assert!(matches!(*other, Node::IfElse(..)));
        assert!(matches!(parse("1 < x <= 3").unwrap(), Node::Cmp(_, v) if v.len() == 2));
        assert!(matches!(parse("x not in y").unwrap(), Node::Cmp(_, v) if v[0].0 == CmpOp::NotIn));
    }

    #[test]
    fn strings_and_escapes() {
        let Node::Const(Const::Str(s)) = parse(r#"'a\'b' "c\n" r'\d'"#).unwrap() else {
            panic!("not a string")
        };
        assert_eq!(s, "a'bc\n\\d");
    }

    #[test]
    fn rejects_what_python_expressions_cannot_do() {
        for bad in [
            "x = 1",
            "lambda x: x",
            "f'{x'",
            "1 +",
            "(1",
            "a[1",
            "import os",
            "x; y",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(parse(&deep).is_err());
    }
}
