import ArgumentParser
import Console
import Foundation
import Gateway

/// `mxgate web user add|delete|list|token`: the review console's users file.
struct Web: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the review console's users.",
        discussion: """
            The console ([web] listen) lets users log in with a password; viewers search and read, \
            admins also release, delete, allow-list and manage the queue. Scripts use an API token \
            (Authorization: Bearer TOKEN). See docs/console.md.

              mxgate web user add alice --role admin      (asks for the password)
              echo "$PASSWORD" | mxgate web user add bot --role viewer
              mxgate web user token bot                    (prints a new API token once)
              mxgate web user delete alice
            """,
        subcommands: [User.self]
    )

    struct User: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add, delete, list users, or issue an API token.",
                                                        subcommands: [Add.self, Delete.self, List.self, Token.self])
    }

    static func usersFile(_ options: ConfigOption) throws -> UsersFile {
        let config = try options.load()
        guard let web = config.web else {
            printError("mxgate: [web] listen is not set in \(options.config): the console is off")
            throw ExitCode(1)
        }
        return UsersFile(path: web.users)
    }

    /// Runs one change of the users file; its error goes to stderr with exit 1.
    static func change(_ body: () throws(UsersFile.Failure) -> Void) throws {
        do { try body() } catch {
            printError("mxgate: \(error)")
            throw ExitCode(1)
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user, or set an existing user's role and password.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The user name (letters, digits, . _ @ -).") var name: String
        @Option(help: "admin or viewer.") var role: String = "viewer"

        func run() throws {
            guard let r = Role(rawValue: role) else {
                printError("mxgate: --role must be admin or viewer")
                throw ExitCode(1)
            }
            let file = try Web.usersFile(options)
            let password = try Self.readPassword()
            try Web.change { () throws(UsersFile.Failure) in try file.add(name: name, role: r, password: password) }
            print("\(name) (\(r.rawValue)) saved in \(file.path)")
        }

        /// From the terminal without echo (asked twice), or the first line of standard input.
        static func readPassword() throws -> String {
            if isatty(0) == 1 {
                guard let a = getpass("Password: ").map({ String(cString: $0) }), let b = getpass("Again: ").map({ String(cString: $0) }) else { throw ExitCode(1) }
                guard a == b else {
                    printError("mxgate: the passwords differ")
                    throw ExitCode(1)
                }
                return a
            }
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                printError("mxgate: no password on standard input")
                throw ExitCode(1)
            }
            return line
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a user (and its API token).")
        @OptionGroup var options: ConfigOption
        @Argument var name: String

        func run() throws {
            let file = try Web.usersFile(options)
            try Web.change { () throws(UsersFile.Failure) in try file.delete(name: name) }
            print("\(name) deleted")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users and their roles.")
        @OptionGroup var options: ConfigOption

        func run() throws {
            let file = try Web.usersFile(options)
            var users: [ConsoleUser] = []
            try Web.change { () throws(UsersFile.Failure) in users = try file.load() }
            for u in users { print("\(u.name)\t\(u.role.rawValue)\t\(u.tokenHash == nil ? "no token" : "token")") }
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue a new API token for a user (the old one stops working); printed once.")
        @OptionGroup var options: ConfigOption
        @Argument var name: String

        func run() throws {
            let file = try Web.usersFile(options)
            var token = ""
            try Web.change { () throws(UsersFile.Failure) in token = try file.issueToken(name: name) }
            print(token)
        }
    }
}
