mod corpus;
mod evasion;
mod hosts;
