/// What the greylist knows of a delivery attempt, looked up before the
/// stage whose rules use `greylist` (the policy never waits on the store).
/// At rcpt it is the recipient's triplet; at data, the transaction's
/// (every recipient's triplet, and the message's body hash).
public struct GreylistCheck: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        /// Never seen (or its retry window passed): refused, and remembered.
        case new
        /// Seen, but the delay has not passed yet: refused again.
        case early
        /// Seen at least the delay ago, within the retry window: passes, and is remembered as passed.
        case retried
        /// Passed before: passes.
        case known
        /// The client network passed often enough to be let through (postgrey's auto-whitelist).
        case client
        /// The same message (body hash) was refused at least the delay ago, from whichever address: passes.
        case sameMessage = "same-message"
        /// The store could not answer and the admin chose to let mail through.
        case unavailable
    }

    public var outcome: Outcome
    /// "client-network / sender / recipient", as stored (the sender normalised).
    public var triplet: String
    /// Seconds since the first attempt (0 for a new one).
    public var waited: Double
    /// Seconds until a retry passes (for `early` and `new`).
    public var retryIn: Double
    /// Why, in words, for the explanation of the rule.
    public var detail: String
    /// At data: the body's hash the check was made with (what a retry of the same message matches).
    public var message: String?
    /// Made on the node's own state because the shared store failed: what it decided is remembered there too.
    public var fromLocalState = false
    /// A passed triplet whose expiry is due for renewal: its first-seen
    /// time, to write back with today's (nil: nothing to write).
    public var renewal: Double?

    public init(outcome: Outcome, triplet: String, waited: Double = 0, retryIn: Double = 0, detail: String = "") {
        self.outcome = outcome
        self.triplet = triplet
        self.waited = waited
        self.retryIn = retryIn
        self.detail = detail
    }

    public var passes: Bool {
        switch self.outcome {
        case .new, .early: return false
        case .retried, .known, .client, .sameMessage, .unavailable: return true
        }
    }
}
