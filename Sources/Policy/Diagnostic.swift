/// A problem in a policy or table file, printed as `FILE:LINE:COL: message`
/// (DESIGN.md: `mxgate check` names file, line and column).
public struct PolicyDiagnostic: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String
    /// Warnings are printed by `mxgate check` but do not fail it.
    public var isWarning: Bool

    public init(file: String, line: Int, column: Int, message: String, isWarning: Bool = false) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        self.isWarning = isWarning
    }

    public var description: String { "\(file):\(line):\(column): \(isWarning ? "warning: " : "")\(message)" }
}

/// All problems found while loading, errors and warnings together.
public struct PolicyLoadError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [PolicyDiagnostic]
    public init(diagnostics: [PolicyDiagnostic]) { self.diagnostics = diagnostics }
    public var errors: [PolicyDiagnostic] { diagnostics.filter { !$0.isWarning } }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}
