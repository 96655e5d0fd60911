/// The milter protocol, version 6, as Sendmail's libmilter and Postfix speak
/// it. There is no RFC; this follows libmilter's `mfdef.h` (the command,
/// response, action and protocol codes), Postfix's MILTER_README (macros
/// per stage, the no-reply steps) and the protocol notes published with
/// Sendmail::PMilter and purepythonmilter (`docs/milter-protocol.md`).
///
/// Every packet is a 32-bit big-endian length (of what follows), one
/// command byte, then the command's data. The MTA is the client: it sends
/// commands; the milter answers each (unless negotiated away) with one
/// response, or with modifications and then a response at end of message.
public enum Milter {
    /// The protocol version this implementation speaks.
    public static let version: UInt32 = 6
    /// Largest body chunk an MTA sends by default (MILTER_CHUNK_SIZE).
    public static let chunkSize = 65535
    /// Largest packet accepted: the 1 MB data size libmilter can negotiate
    /// (SMFIP_MDS_1M), with room for the header; anything longer is an error.
    public static let maxPacket = 1024 * 1024 + 64

    /// What the milter may do to a message (SMFIF_*), offered by the MTA and chosen by the milter.
    public struct Actions: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let addHeaders = Actions(rawValue: 0x01)
        public static let changeBody = Actions(rawValue: 0x02)
        public static let addRecipients = Actions(rawValue: 0x04)
        public static let deleteRecipients = Actions(rawValue: 0x08)
        public static let changeHeaders = Actions(rawValue: 0x10)
        public static let quarantine = Actions(rawValue: 0x20)
        public static let changeFrom = Actions(rawValue: 0x40)
        public static let addRecipientsWithArgs = Actions(rawValue: 0x80)
        public static let setSymbolList = Actions(rawValue: 0x100)
    }

    /// Steps the MTA may leave out (SMFIP_NO*), steps the milter will not
    /// answer (SMFIP_NR_*), and protocol features.
    public struct Steps: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let noConnect = Steps(rawValue: 0x1)
        public static let noHelo = Steps(rawValue: 0x2)
        public static let noMail = Steps(rawValue: 0x4)
        public static let noRecipient = Steps(rawValue: 0x8)
        public static let noBody = Steps(rawValue: 0x10)
        public static let noHeaders = Steps(rawValue: 0x20)
        public static let noEndOfHeaders = Steps(rawValue: 0x40)
        public static let noReplyHeader = Steps(rawValue: 0x80)
        public static let noUnknown = Steps(rawValue: 0x100)
        public static let noData = Steps(rawValue: 0x200)
        /// The MTA understands SMFIR_SKIP.
        public static let skip = Steps(rawValue: 0x400)
        /// Send rejected recipients too.
        public static let rejectedRecipients = Steps(rawValue: 0x800)
        public static let noReplyConnect = Steps(rawValue: 0x1000)
        public static let noReplyHelo = Steps(rawValue: 0x2000)
        public static let noReplyMail = Steps(rawValue: 0x4000)
        public static let noReplyRecipient = Steps(rawValue: 0x8000)
        public static let noReplyData = Steps(rawValue: 0x10000)
        public static let noReplyUnknown = Steps(rawValue: 0x20000)
        public static let noReplyEndOfHeaders = Steps(rawValue: 0x40000)
        public static let noReplyBody = Steps(rawValue: 0x80000)
        /// Header values keep their leading space.
        public static let headerLeadingSpace = Steps(rawValue: 0x100000)
        public static let maxData256K = Steps(rawValue: 0x10000000)
        public static let maxData1M = Steps(rawValue: 0x20000000)
    }

    /// The stages macros are defined for (the first byte of SMFIC_MACRO),
    /// and the stage numbers of a symbol list (SMFIM_*).
    public enum Stage: UInt8, Sendable, CaseIterable {
        case connect = 0x43  // 'C'
        case helo = 0x48  // 'H'
        case mail = 0x4D  // 'M'
        case recipient = 0x52  // 'R'
        case data = 0x54  // 'T'
        case endOfHeaders = 0x4E  // 'N'
        case endOfMessage = 0x45  // 'E'
        case header = 0x4C  // 'L'
        case body = 0x42  // 'B'
        case unknown = 0x55  // 'U'

        /// SMFIM_* numbering used in an option negotiation's symbol list.
        public var symbolListIndex: UInt32? {
            switch self {
            case .connect: return 0
            case .helo: return 1
            case .mail: return 2
            case .recipient: return 3
            case .data: return 4
            case .endOfMessage: return 5
            case .endOfHeaders: return 6
            default: return nil
            }
        }
    }

    /// The client's address in SMFIC_CONNECT.
    public enum Address: Sendable, Equatable {
        case inet(String, port: UInt16)
        case inet6(String, port: UInt16)
        case unix(String)
        case unknown
    }
}

/// A command from the MTA (SMFIC_*).
public enum MilterCommand: Sendable, Equatable {
    case negotiate(version: UInt32, actions: Milter.Actions, steps: Milter.Steps)
    case macros(Milter.Stage?, [(String, String)])
    case connect(hostname: String, address: Milter.Address)
    case helo(String)
    /// The sender as the MTA saw it ("<a@b.example>") and the ESMTP arguments.
    case mail(String, arguments: [String])
    case recipient(String, arguments: [String])
    case data
    case header(name: String, value: String)
    case endOfHeaders
    case body([UInt8])
    case endOfMessage([UInt8])
    case abort
    case quit
    /// Quit this transaction's milter state, keep the connection for a new SMTP session.
    case quitNewConnection
    case unknown(String)

    public static func == (a: MilterCommand, b: MilterCommand) -> Bool {
        switch (a, b) {
        case let (.negotiate(v1, a1, s1), .negotiate(v2, a2, s2)): return v1 == v2 && a1 == a2 && s1 == s2
        case let (.macros(st1, m1), .macros(st2, m2)): return st1 == st2 && m1.elementsEqual(m2, by: { $0 == $1 })
        case let (.connect(h1, a1), .connect(h2, a2)): return h1 == h2 && a1 == a2
        case let (.helo(x), .helo(y)), let (.unknown(x), .unknown(y)): return x == y
        case let (.mail(x, ax), .mail(y, ay)), let (.recipient(x, ax), .recipient(y, ay)): return x == y && ax == ay
        case let (.header(n1, v1), .header(n2, v2)): return n1 == n2 && v1 == v2
        case let (.body(x), .body(y)), let (.endOfMessage(x), .endOfMessage(y)): return x == y
        case (.data, .data), (.endOfHeaders, .endOfHeaders), (.abort, .abort), (.quit, .quit),
             (.quitNewConnection, .quitNewConnection): return true
        default: return false
        }
    }
}

/// A response or modification from the milter (SMFIR_*).
public enum MilterResponse: Sendable, Equatable {
    case negotiate(version: UInt32, actions: Milter.Actions, steps: Milter.Steps, symbols: [Milter.Stage: [String]])
    case `continue`
    case accept
    case reject
    case tempfail
    case discard
    /// A full SMTP reply: "550 5.7.1 text" (a 4xx or 5xx).
    case replyCode(String)
    case quarantine(String)
    case skip
    case progress
    case connectionFailure
    case shutdown
    case addHeader(name: String, value: String)
    /// Insert at a position (0: first).
    case insertHeader(index: UInt32, name: String, value: String)
    /// Change the index-th (from 1) header of that name; an empty value deletes it.
    case changeHeader(index: UInt32, name: String, value: String)
    case addRecipient(String)
    case addRecipientWithArgs(String, String)
    case deleteRecipient(String)
    case changeFrom(String, String?)
    case replaceBody([UInt8])

    /// A response that ends the step (everything but the modifications and progress).
    public var isFinal: Bool {
        switch self {
        case .addHeader, .insertHeader, .changeHeader, .addRecipient, .addRecipientWithArgs, .deleteRecipient,
             .changeFrom, .replaceBody, .progress:
            return false
        default:
            return true
        }
    }
}

/// A packet that does not follow the protocol: the connection ends with it.
public struct MilterProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "milter protocol: \(message)" }
}
