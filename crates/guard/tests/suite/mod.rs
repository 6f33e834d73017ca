mod corpus;
mod evasion;
