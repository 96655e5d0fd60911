import Testing

@testable import Heuristics

/// How a message was put together and sent: a From with no address, a way
/// out printed in the text but not in the header, MIME without
/// MIME-Version, plain ASCII hidden in base64, and characters no font draws
/// inside words. Each fires on what spamware writes and stays quiet on what
/// mail programs and list managers write.
struct SendingSignalsTests {
    func from(_ f: String) -> Set<String> {
        Make.signals(Make.plain.replacingOccurrences(of: "From: Alice Smith <alice@partner.example>", with: "From: " + f))
    }

    func with(_ extra: String, _ body: String = "hello there, the notes are attached.\n", type: String = "text/plain") -> Set<String> {
        Make.signals(Make.plain + extra, body, type: type)
    }

    @Test func fromWithNoAddress() {
        #expect(from("\"Maria Clennett\"").contains("FROM_NO_ADDRESS"))
        // The comma outside quotes splits "Ihr Gewinner Team" from its address; the address still counts for the rest.
        let split = from("Ihr Gewinner Team, jehd <service@paypa1.com>")
        #expect(split.contains("FROM_NO_ADDRESS"))
        #expect(split.contains("LOOKALIKE_DOMAIN"), "the address after the comma is still judged")
        #expect(!from("\"Smith, Alice\" <alice@partner.example>").contains("FROM_NO_ADDRESS"), "a quoted comma is part of the name")
        #expect(!from("alice@partner.example").contains("FROM_NO_ADDRESS"))
    }

    @Test func unsubscribeInTheTextOnly() {
        let text = "Great offers every week.\nTo unsubscribe, reply with REMOVE in the subject.\n"
        #expect(with("", text).contains("UNSUBSCRIBE_NO_LIST_HEADER"))
        #expect(!with("List-Unsubscribe: <mailto:leave@lists.partner.example>\n", text).contains("UNSUBSCRIBE_NO_LIST_HEADER"))
        #expect(!with("List-Id: <news.partner.example>\n", text).contains("UNSUBSCRIBE_NO_LIST_HEADER"))
        #expect(!with("", "Klicken Sie hier, um sich abzumelden? Nein.\n").contains("UNSUBSCRIBE_NO_LIST_HEADER"), "abmelden as a whole phrase only")
        #expect(with("", "Um den Newsletter abzubestellen oder sich abmelden: hier.\n").contains("UNSUBSCRIBE_NO_LIST_HEADER"))
    }

    @Test func precedenceBulkWithoutAList() {
        #expect(with("Precedence: bulk\n").contains("PRECEDENCE_BULK_NO_LIST"))
        #expect(!with("Precedence: bulk\nList-Id: <dev.lists.partner.example>\n").contains("PRECEDENCE_BULK_NO_LIST"))
        #expect(!with("Precedence: list\n").contains("PRECEDENCE_BULK_NO_LIST"))
    }

    @Test func mimeWithoutMimeVersion() {
        #expect(with("", "<p>Hello</p>\n", type: "text/html").contains("MIME_NO_VERSION"))
        #expect(!with("MIME-Version: 1.0\n", "<p>Hello</p>\n", type: "text/html").contains("MIME_NO_VERSION"))
        #expect(!with("").contains("MIME_NO_VERSION"), "plain text is what a message without MIME is")
    }

    @Test func plainASCIIInBase64() {
        // "Account notice" and "PayPal Service" need no encoding.
        #expect(Make.signals(Make.plain.replacingOccurrences(of: "Subject: Notes from Tuesday", with: "Subject: =?UTF-8?B?QWNjb3VudCBub3RpY2U=?="))
            .contains("HEADER_EXCESS_BASE64"))
        #expect(from("=?utf-8?b?UGF5UGFsIFNlcnZpY2U?= <service@partner.example>").contains("HEADER_EXCESS_BASE64"), "padding left off")
        // "Grüße" does.
        #expect(!Make.signals(Make.plain.replacingOccurrences(of: "Subject: Notes from Tuesday", with: "Subject: =?UTF-8?B?R3LDvMOfZQ==?="))
            .contains("HEADER_EXCESS_BASE64"))
        #expect(!from("=?UTF-8?Q?Alice_Smith?= <alice@partner.example>").contains("HEADER_EXCESS_BASE64"), "quoted-printable is another matter")
    }

    @Test func tagAndVariationSelectorCharactersInsideWords() {
        let vs = "\u{E0139}\u{E0139}"
        #expect(with("", "Your wa\(vs)llet p\(vs)hrase has been updated.\n").contains("INVISIBLE_CHARS"))
        let subject = Make.signals(Make.plain.replacingOccurrences(of: "Subject: Notes from Tuesday", with: "Subject: Se\(vs)cu\(vs)rity update"))
        #expect(subject.contains("INVISIBLE_CHARS"))
        #expect(!with("", "Thumbs up \u{1F44D}\u{FE0F} and a heart \u{2764}\u{FE0F}\n").contains("INVISIBLE_CHARS"), "emoji presentation is ordinary text")
        // The brand is read with the invisible characters taken out.
        #expect(from("Tr\(vs)ust Wa\(vs)llet <so@viajes.example>").contains("BRAND_IMPERSONATION"))
    }

    @Test func aBrandThatIsAlsoANameOrAWord() {
        #expect(!from("Chase Smith <chase.smith@partner.example>").contains("BRAND_IMPERSONATION"), "a person called Chase")
        #expect(!from("Lockergnome Apple Core <subscriptions@lockergnome.example>").contains("BRAND_IMPERSONATION"), "a newsletter about Apple")
        #expect(from("Chase Online <alerts@secure-chase.example>").contains("BRAND_IMPERSONATION"))
        #expect(from("Apple Support <id@apple-verify.example>").contains("BRAND_IMPERSONATION"))
        #expect(from("UPS <collie@parcels.example>").contains("BRAND_IMPERSONATION"))
        #expect(from("Ledger <do-not-reply@maildbx.example>").contains("BRAND_IMPERSONATION"))
        #expect(!from("General Ledger Team <gl@accounting.example>").contains("BRAND_IMPERSONATION"), "a ledger is also a book of accounts")
        #expect(from("PayPal Billing Department <x@pp-billing.example>").contains("BRAND_IMPERSONATION"), "other brands as before")
    }

    @Test func brandInParenthesesIsAnEmployer() {
        #expect(!from("Masami Hiramatsu (Google) <mhiramat@kernel.org>").contains("BRAND_IMPERSONATION"))
        #expect(from("Google Drive <share@drive-files.example>").contains("BRAND_IMPERSONATION"))
    }
}

/// Two marks of a pitch sent to a list of addresses: a sentence shouted
/// whole, and a greeting that names the address instead of a person.
struct ShoutAndMergeTests {
    func to(_ address: String, _ body: String) -> Set<String> {
        Make.signals(Make.plain.replacingOccurrences(of: "To: bob@example.com", with: "To: " + address), body)
    }

    @Test func aSentenceInCapitals() {
        #expect(Make.signals(Make.plain, "Read this. DEEP DOWN YOU KNOW THAT MILLIONAIRES ARE MADE BY GETTING IN EARLY. Call.\n").contains("BODY_CAPS_RUN"))
        #expect(!Make.signals(Make.plain, "The NFS and SMB code in the VFS of RHEL and SLES differs.\n").contains("BODY_CAPS_RUN"), "acronyms among words")
    }

    @Test func aGreetingThatIsTheAddress() {
        #expect(to("jm@example.com", "Dear jm ,\nWe have a special offer for you.\n").contains("GREETING_NAMES_ADDRESS"))
        #expect(to("lsb36@example.com", "Hi lsb36, here is the deal.\n").contains("GREETING_NAMES_ADDRESS"))
        #expect(!to("john@example.com", "Dear John,\nthe minutes are attached.\n").contains("GREETING_NAMES_ADDRESS"), "a person writes a name")
        #expect(!to("jm@example.com", "Dear all,\nthe minutes are attached.\n").contains("GREETING_NAMES_ADDRESS"))
        #expect(!to("fork@lists.example.com", "Hello fork,\nthey had him on the radio.\n").contains("GREETING_NAMES_ADDRESS"), "a person greeting a list")
    }
}

/// Dates computed without Calendar: the same instants, obsolete forms included.
struct RFC5322DateTests {
    @Test func instantsMatchTheCalendars() {
        func t(_ s: String) -> Double? { RFC5322Date.parse(s)?.timeIntervalSince1970 }
        #expect(t("Tue, 01 Dec 2026 10:00:00 +0000") == 1_796_119_200)
        #expect(t("Mon, 02 Sep 2002 12:00:00 -0700") == 1_030_993_200)
        #expect(t("Thu, 29 Feb 2024 23:59:59 EST") == 1_709_269_199, "a leap day, a named zone")
        #expect(t("1 Jan 99 00:00 GMT") == 915_148_800, "a two-digit year, no seconds, no weekday")
        #expect(t("Wed, 1 Mar 2000 00:00:00 +0530") == 951_849_000, "the day after a century's leap day")
        #expect(t("31 Apr 2026 00:00:00 +0000") == 1_777_593_600, "the 31st of a 30-day month rolls into May, as Calendar's did")
        #expect(t("Tue, 32 Dec 2026 10:00:00 +0000") == nil)
    }
}

/// The byte-level string helpers that replaced Foundation's bridged ones: the same answers.
struct StringHelperTests {
    @Test func skeletonReadsLookAlikesAsTheLetterTheyPassFor() {
        #expect(Domains.skeleton("paypa1") == Domains.skeleton("paypal"))
        #expect(Domains.skeleton("rnicrosoft") == Domains.skeleton("microsoft"))
        #expect(Domains.skeleton("vvellsfargo") == Domains.skeleton("wellsfargo"))
        #expect(Domains.skeleton("rrn") == "rm" && Domains.skeleton("vvv") == "wv" && Domains.skeleton("rvv") == "rw")
        #expect(Domains.skeleton("arnazon-shop") == "amazonshop")
        #expect(Domains.skeleton("r") == "r" && Domains.skeleton("") == "")
    }

    @Test func trailingIDAfterARunOfSpaces() {
        #expect(StyleSignals.trailingID("Get out of debt     29521"))
        #expect(StyleSignals.trailingID("Your order   XK2Z9"))
        #expect(!StyleSignals.trailingID("Minutes   of the meeting today"), "more than one word after the run")
        #expect(!StyleSignals.trailingID("Trailing spaces   "))
        #expect(StyleSignals.trailingID("Quarterly report 883412"), "no run of spaces: a long number at the end")
        #expect(!StyleSignals.trailingID("Meeting on 2026"))
    }

    @Test func containsBytesFindsWhatContainsFinds() {
        for (hay, needle) in [("undisclosed-recipients:;", "undisclosed"), ("Win $$$ now", "$$"), ("hi!!", "!!"), ("a", "ab"), ("", "x"), ("x", ""),
                              ("caf\u{E9}!!", "!!"), ("ñandú", "dú")] {
            #expect(hay.containsBytes(needle) == hay.contains(needle), "\(hay) / \(needle)")
            #expect(hay[...].containsBytes(needle) == hay.contains(needle))
        }
    }
}

/// The byte paths of Domains give what the general ones give.
struct DomainBytesTests {
    /// The general path, as it was: labels split on Characters.
    func slowRegistered(_ host: String) -> String {
        let labels = host.lowercased().split(separator: ".").map(String.init)
        guard labels.count > 2 else { return labels.joined(separator: ".") }
        let lastTwo = labels.suffix(2).joined(separator: ".")
        return Domains.twoLabelSuffixes.contains(lastTwo) ? labels.suffix(3).joined(separator: ".") : lastTwo
    }

    @Test func registeredDomains() {
        for h in ["mail.paypal.com", "paypal.com", "com", "a.b.example.co.uk", "example.co.uk", "co.uk", "x.y.z.com.au", "MAIL.Example.ORG",
                  "a..b.c", ".x.com", "x.com.", "", "xn--pypal-4ve.com", "ünï.example.de", "1.2.3.4"] {
            #expect(Domains.registered(h) == slowRegistered(h), "\(h)")
        }
    }

    @Test func ipLiterals() {
        let yes = ["192.0.2.1", "[192.0.2.1]", "[2001:db8::1]", "2001:db8::1", "3232235777", "0xC0.0xA8.0x01.0x01", "0x7f.0X0.0x0.0x1"]
        let no = ["example.com", "www.example.com", "1.2.3", "16777216", "1.2.3.4.5", "", "[]", "cafe.babe.dead.beef", "0x.0y.0x.0x", "abc:def.com"]
        for h in yes { #expect(Domains.isIPLiteral(h), "\(h)") }
        for h in no { #expect(!Domains.isIPLiteral(h), "\(h)") }
        #expect(Domains.isIPLiteral("１.２.３.４") == true, "fullwidth digits are numbers to the general path")
    }
}
