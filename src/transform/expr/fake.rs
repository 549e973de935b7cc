//! `fake`: deterministic fake data for masking, in the shapes Python Faker produces.
//!
//! The values are not Faker's (its generator is Python's Mersenne Twister and its word lists);
//! what matters for masking is the shape and that a seed reproduces the same output.

const FIRST: &[&str] = &[
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "zoe",
    "omar",
    "lena",
    "ivan",
    "amara",
    "kenji",
    "sofia",
    "mateo",
];
const LAST: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "wells",
];
const WORDS: &[&str] = &[
    "alpha", "river", "stone", "quiet", "market", "orange", "signal", "harbor", "maple", "cloud",
    "thread", "lantern", "copper", "meadow", "anchor", "summit", "velvet", "ember", "prairie",
    "canyon",
];
const DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];
const CITIES: &[&str] = &[
    "Port Matthew",
    "East Linda",
    "Lake Susan",
    "North Omar",
    "West Amara",
    "New Kenji",
];
const STREETS: &[&str] = &[
    "Main", "Oak", "Pine", "Cedar", "Elm", "Lake", "Hill", "Park",
];
const SUFFIXES: &[&str] = &["Street", "Avenue", "Road", "Lane", "Drive", "Court"];
const STATES: &[&str] = &["CA", "NY", "TX", "WA", "IL", "FL", "OR", "CO"];
const COMPANIES: &[&str] = &["Group", "LLC", "Inc", "and Sons", "PLC", "Ltd"];
const JOBS: &[&str] = &[
    "Engineer",
    "Teacher",
    "Nurse",
    "Accountant",
    "Designer",
    "Chemist",
];
const COUNTRIES: &[&str] = &["Canada", "Kenya", "Japan", "Peru", "Norway", "Chile"];

const METHODS: &[&str] = &[
    "email",
    "free_email",
    "safe_email",
    "company_email",
    "name",
    "first_name",
    "last_name",
    "user_name",
    "credit_card_number",
    "phone_number",
    "address",
    "street_address",
    "city",
    "state_abbr",
    "postcode",
    "zipcode",
    "country",
    "company",
    "job",
    "uuid4",
    "word",
    "sentence",
    "text",
    "ipv4",
    "url",
    "random_int",
    "date",
    "iso8601",
    "ssn",
    "iban",
    "license_plate",
];

/// Whether `fake.<name>()` is supported.
pub(crate) fn is_method(name: &str) -> bool {
    name == "seed_instance" || METHODS.contains(&name)
}

/// A seeded generator behind the `fake` name.
#[derive(Debug, Clone)]
pub struct Faker {
    state: u64,
}

impl Faker {
    /// A generator; `seed` makes its output reproducible (`faker_config.seed`).
    pub fn new(seed: Option<u64>) -> Self {
        Faker {
            state: seed.unwrap_or_else(rand::random),
        }
    }

    /// `fake.seed_instance(value)`: reseeds from any value's text.
    pub fn seed_from_text(&mut self, text: &str) {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(text.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        self.state = u64::from_le_bytes(b);
    }

    /// splitmix64: small, fast, and stable across versions (unlike library generators).
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len() as u64) as usize]
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn cap(s: &str) -> String {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    }

    /// Calls `fake.<name>(ints…)`; `None` when the method is not supported.
    pub fn call(&mut self, name: &str, ints: &[i64]) -> Option<String> {
        Some(match name {
            "email" | "free_email" | "safe_email" | "company_email" => {
                let user = self.call("user_name", &[])?;
                format!("{user}@{}", self.pick(DOMAINS))
            }
            "user_name" => {
                let f = self.pick(FIRST);
                let l = self.pick(LAST);
                match self.below(3) {
                    0 => format!("{}{l}", &f[..1]),
                    1 => format!("{f}{}", self.digits(2)),
                    _ => format!("{f}.{l}"),
                }
            }
            "name" => format!(
                "{} {}",
                Self::cap(self.pick(FIRST)),
                Self::cap(self.pick(LAST))
            ),
            "first_name" => Self::cap(self.pick(FIRST)),
            "last_name" => Self::cap(self.pick(LAST)),
            "credit_card_number" => {
                // A Luhn-valid 16-digit number starting with 4 (Visa-shaped).
                let mut d: Vec<u32> = vec![4];
                d.extend((0..14).map(|_| self.below(10) as u32));
                let sum: u32 = d
                    .iter()
                    .rev()
                    .enumerate()
                    .map(|(i, &x)| {
                        if i % 2 == 0 {
                            let y = x * 2;
                            if y > 9 { y - 9 } else { y }
                        } else {
                            x
                        }
                    })
                    .sum();
                d.push((10 - sum % 10) % 10);
                d.iter()
                    .map(|x| char::from_digit(*x, 10).unwrap_or('0'))
                    .collect()
            }
            "phone_number" => format!("({}) {}-{}", self.digits(3), self.digits(3), self.digits(4)),
            "street_address" => format!(
                "{} {} {}",
                1 + self.below(9999),
                self.pick(STREETS),
                self.pick(SUFFIXES)
            ),
            "city" => self.pick(CITIES).to_string(),
            "state_abbr" => self.pick(STATES).to_string(),
            "postcode" | "zipcode" => self.digits(5),
            "address" => {
                let street = self.call("street_address", &[])?;
                format!(
                    "{street}\n{}, {} {}",
                    self.pick(CITIES),
                    self.pick(STATES),
                    self.digits(5)
                )
            }
            "country" => self.pick(COUNTRIES).to_string(),
            "company" => format!("{} {}", Self::cap(self.pick(LAST)), self.pick(COMPANIES)),
            "job" => self.pick(JOBS).to_string(),
            "uuid4" => {
                let a = self.next();
                let b = self.next();
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&a.to_le_bytes());
                bytes[8..].copy_from_slice(&b.to_le_bytes());
                uuid::Builder::from_random_bytes(bytes)
                    .into_uuid()
                    .to_string()
            }
            "word" => self.pick(WORDS).to_string(),
            "sentence" | "text" => {
                let n = 4 + self.below(6);
                let words: Vec<&str> = (0..n).map(|_| self.pick(WORDS)).collect();
                format!("{}.", Self::cap(&words.join(" ")))
            }
            "ipv4" => format!(
                "{}.{}.{}.{}",
                1 + self.below(254),
                self.below(256),
                self.below(256),
                1 + self.below(254)
            ),
            "url" => format!("https://www.{}/", self.pick(DOMAINS)),
            "random_int" => {
                let (lo, hi) = match ints {
                    [a, b, ..] => (*a, *b),
                    [b] => (0, *b),
                    [] => (0, 9999),
                };
                let span = (hi - lo).max(0) as u64 + 1;
                (lo + self.below(span) as i64).to_string()
            }
            "date" => format!(
                "{}-{:02}-{:02}",
                1970 + self.below(55),
                1 + self.below(12),
                1 + self.below(28)
            ),
            "iso8601" => format!(
                "{}-{:02}-{:02}T{:02}:{:02}:{:02}",
                1970 + self.below(55),
                1 + self.below(12),
                1 + self.below(28),
                self.below(24),
                self.below(60),
                self.below(60)
            ),
            "ssn" => format!("{}-{}-{}", self.digits(3), self.digits(2), self.digits(4)),
            "iban" => format!("GB{}WEST{}", self.digits(2), self.digits(14)),
            "license_plate" => format!("{}-{}", self.digits(3), self.digits(4)),
            _ => return None,
        })
    }
}
