import Testing

@testable import Heuristics

/// Bulk advertising: each signal on a pitch made to show it, and not on the
/// ordinary mail it could be mistaken for (a newsletter with one offer, a
/// price list, a reply that says "you", an HTML mail from a named program).
struct MarketingSignalsTests {
    func subject(_ s: String, _ body: String = "hello there, the notes are attached.\n", type: String = "text/plain") -> Set<String> {
        Make.signals(Make.plain.replacingOccurrences(of: "Subject: Notes from Tuesday", with: "Subject: " + s), body, type: type)
    }

    @Test func phrasesCountAtOneLevel() {
        let pitch = """
            Dear friend, this is a one-time mailing. Order now and get a free gift with no obligation!
            Call now toll free, satisfaction guaranteed, lowest prices, money back. Act now: limited time.
            To be removed, reply with remove.
            """
        let s = subject("Great news", pitch)
        #expect(s.contains("SPAM_PHRASES_8"))
        #expect(!s.contains("SPAM_PHRASES_4") && !s.contains("SPAM_PHRASES_2"), "only the highest level reached")
        let two = subject("Meeting", "We can offer a free trial of the tool, no obligation.\n")
        #expect(two.contains("SPAM_PHRASES_2"))
        #expect(!subject("Meeting", "the build is free of warnings now.\n").contains { $0.hasPrefix("SPAM_PHRASES") })
    }

    @Test func aPhraseBrokenAcrossLinesStillCounts() {
        let s = subject("Offer", "It comes with no\r\nobligation and a free\r\n   trial.\n")
        #expect(s.contains("SPAM_PHRASES_2"))
    }

    @Test func loudFontsInHTML() {
        let html = "<p><font size=\"+3\" color=\"red\">BIG SALE</font> <font size=5>today</font> <font size=2>small print</font></p>\n"
        #expect(subject("Sale", html, type: "text/html").contains("HTML_LOUD_FONTS"))
        let quiet = "<p><font size=2 face=Arial>minutes</font> <font size=\"-1\">of the meeting</font> <font color=blue>here</font></p>\n"
        #expect(!subject("Minutes", quiet, type: "text/html").contains("HTML_LOUD_FONTS"))
    }

    @Test func wordsSpelledOutLetterByLetter() {
        let s = subject("Pharmacy", "Today: V 1 A G R A at $0.99 and C I A L 1 S at $1.99\n")
        #expect(s.contains("BODY_SPACED_LETTERS"))
        #expect(!subject("Dates", "the days 1 2 3 4 5 6 7 and 8 9 10 11 12 13 14 are booked; plan A B or C\n").contains("BODY_SPACED_LETTERS"))
    }

    @Test func pricesAndTheReader() {
        let s = subject("Your savings", "Prices: $19.99, €25 and £10 only, or $5 a month.\n")
        #expect(s.isSuperset(of: ["BODY_PRICES", "SUBJECT_ADDRESSES_READER"]))
        #expect(!subject("Budget", "It cost $20 in 2025.\n").contains("BODY_PRICES"))
        let you = String(repeating: "you will love what your friends say to you about it and your home. ", count: 6)
        #expect(subject("Offer", you).contains("BODY_ADDRESSES_READER"))
        let talk = String(repeating: "the tests pass on the new machine and the build is green again today. ", count: 6) + "Thank you.\n"
        #expect(!subject("Build", talk).contains("BODY_ADDRESSES_READER"))
        #expect(!subject("Young builders meet").contains("SUBJECT_ADDRESSES_READER"), "a whole word")
    }

    @Test func percentInTheSubject() {
        #expect(subject("Save 70% on everything").contains("SUBJECT_PERCENT"))
        #expect(subject("up to 50 % off").contains("SUBJECT_PERCENT"))
        #expect(!subject("Re: the % operator in C").contains("SUBJECT_PERCENT"))
    }

    @Test func bareHTMLFromNoMailProgram() {
        let html = "<html><body><p>Hello</p></body></html>\n"
        let bare = Make.signals(Make.plain, html, type: "text/html")
        #expect(bare.isSuperset(of: ["HTML_ONLY", "HTML_ONLY_NO_MAILER"]))
        let named = Make.signals(Make.plain + "X-Mailer: Microsoft Outlook 16.0\n", html, type: "text/html")
        #expect(named.contains("HTML_ONLY") && !named.contains("HTML_ONLY_NO_MAILER"))
    }

    @Test func fromDomainThatIsNoDomain() {
        func from(_ f: String) -> Set<String> { Make.signals(Make.plain.replacingOccurrences(of: "From: Alice Smith <alice@partner.example>", with: "From: " + f)) }
        #expect(from("Detran <infracao233@detran>").contains("FROM_DOMAIN_INVALID"))
        #expect(from("Bank <alerts@bank_secure.com>").contains("FROM_DOMAIN_INVALID"))
        #expect(!from("Alice <alice@mail.partner.example>").contains("FROM_DOMAIN_INVALID"))
        #expect(!from("Lab <root@[192.0.2.1]>").contains("FROM_DOMAIN_INVALID"), "a domain literal is a valid address")
    }

    @Test func credentialPromptsInOtherLanguages() {
        #expect(subject("Aviso", "Por favor, verifique sua conta hoje.\n").contains("CREDENTIAL_PROMPT"))
        #expect(subject("Konto", "Bitte bestätigen Sie Ihre Angaben.\n").contains("CREDENTIAL_PROMPT"))
    }
}

struct SenderStyleTests {
    @Test func emojiInTheSenderName() {
        func from(_ f: String) -> Set<String> { Make.signals(Make.plain.replacingOccurrences(of: "From: Alice Smith <alice@partner.example>", with: "From: " + f)) }
        #expect(from("🎰 Lucky Casino <no-reply@casino.example>").contains("EMOJI_IN_SENDER_NAME"))
        #expect(!from("Zoë Müller <zoe@partner.example>").contains("EMOJI_IN_SENDER_NAME"), "accented letters are not emoji")
    }

    @Test func pitchesInOtherLanguagesCount() {
        let s = Make.signals(Make.plain, "Jetzt sichern: Ihr Gutschein ist kostenlos!\n")
        #expect(s.contains("SPAM_PHRASES_2"))
    }
}
