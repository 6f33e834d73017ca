mod corpus;
mod evasion;
mod hosts;
mod paths;
