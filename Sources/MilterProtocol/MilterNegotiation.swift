/// Option negotiation (SMFIC_OPTNEG), from the milter's side: the MTA
/// offers a version, the actions it allows and the steps it can leave out;
/// the milter answers with what it takes of those. Nothing outside the
/// offer may be chosen (libmilter refuses the connection then too), and a
/// version below 2 is too old to speak to.
public struct MilterNegotiation: Sendable, Equatable {
    public var version: UInt32
    public var actions: Milter.Actions
    public var steps: Milter.Steps

    public init(version: UInt32, actions: Milter.Actions, steps: Milter.Steps) {
        self.version = version
        self.actions = actions
        self.steps = steps
    }

    /// The agreement, or an error that ends the connection.
    public static func agree(offeredVersion: UInt32, offeredActions: Milter.Actions, offeredSteps: Milter.Steps,
                             wantedActions: Milter.Actions, wantedSteps: Milter.Steps) throws(MilterProtocolError) -> MilterNegotiation {
        guard offeredVersion >= 2 else { throw MilterProtocolError("the MTA speaks milter version \(offeredVersion); 2 or later is needed") }
        let version = min(offeredVersion, Milter.version)
        return MilterNegotiation(version: version, actions: wantedActions.intersection(offeredActions),
                                 steps: wantedSteps.intersection(offeredSteps))
    }

    /// True when the MTA will send this step (a no-step not agreed).
    public func sends(_ step: Milter.Steps) -> Bool { !steps.contains(step) }

    /// True when the milter must answer the step (its no-reply flag not agreed).
    public func answers(_ noReply: Milter.Steps) -> Bool { !steps.contains(noReply) }

    /// The response to the MTA's SMFIC_OPTNEG.
    public func response(symbols: [Milter.Stage: [String]] = [:]) -> MilterResponse {
        .negotiate(version: version, actions: actions, steps: steps, symbols: actions.contains(.setSymbolList) ? symbols : [:])
    }
}
