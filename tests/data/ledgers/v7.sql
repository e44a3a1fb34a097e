-- A mailbridge ledger as schema 7 shipped: the schema 6 fixture migrated forward (the
-- generation: a one-row counter that triggers move on at every write to what the planner
-- reads). Written once; tests/test_upgrades.py opens it.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE account_state (
        account TEXT PRIMARY KEY,
        paused TEXT,
        resume_confirmed INTEGER NOT NULL DEFAULT 0,
        last_ok TEXT,
        last_error TEXT,
        error_since TEXT
    , pauses TEXT NOT NULL DEFAULT '{}');
INSERT INTO account_state VALUES('personal',NULL,1,'2024-05-06T14:05:00+00:00',NULL,NULL,'{}');
INSERT INTO account_state VALUES('work','calendar came back empty',1,'2024-05-06T14:05:00+00:00',NULL,NULL,'{"calendar":"calendar came back empty"}');
CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        account TEXT NOT NULL,
        interview_id INTEGER,
        draft_id INTEGER,
        decision TEXT NOT NULL,
        reason TEXT NOT NULL
    );
INSERT INTO audit VALUES(1,'2024-05-06T14:00:00+00:00','personal',1,NULL,'skip','skipped bob@gmail.com: free-mail address');
INSERT INTO audit VALUES(2,'2024-05-06T14:00:00+00:00','personal',1,1,'created','thank-you to maria@acme.example');
INSERT INTO audit VALUES(3,'2024-05-06T14:00:00+00:00','work',2,NULL,'skip','skipped bob@gmail.com: free-mail address');
INSERT INTO audit VALUES(4,'2024-05-06T14:00:00+00:00','work',2,3,'created','thank-you to maria@acme.example');
CREATE TABLE draft (
        id INTEGER PRIMARY KEY,
        interview_id INTEGER NOT NULL REFERENCES interview(id),
        kind TEXT NOT NULL,
        seq INTEGER NOT NULL,
        recipient_email TEXT NOT NULL,
        recipient_name TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        due TEXT NOT NULL,
        message_id TEXT NOT NULL UNIQUE,
        provider_id TEXT,
        created_at TEXT,
        content_hash TEXT NOT NULL DEFAULT '',
        notes_version INTEGER NOT NULL DEFAULT 0,
        late INTEGER NOT NULL DEFAULT 0,
        reminded_at TEXT,
        flagged TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        gaps INTEGER NOT NULL DEFAULT 0,
        warnings TEXT NOT NULL DEFAULT '[]',
        updated_at TEXT NOT NULL, pending_hash TEXT NOT NULL DEFAULT '', trashed INTEGER NOT NULL DEFAULT 0, version TEXT NOT NULL DEFAULT '',
        UNIQUE (interview_id, kind, seq, recipient_email)
    );
INSERT INTO draft VALUES(1,1,'thank_you',0,'maria@acme.example','María Chen','sent','2024-05-06T16:00:00+00:00','<a0.mailbridge@example.com>','r-0-1','2024-05-06T16:00:00+00:00','abc123',0,0,NULL,'','Thank you — interview with Acme',1,'["unfilled gap"]','2024-05-06T16:00:00+00:00','def456',0,'1716040000:7');
INSERT INTO draft VALUES(2,1,'follow_up',1,'maria@acme.example','María Chen','retracted','2024-05-15T14:00:00+00:00','<b0.mailbridge@example.com>','r-0-2',NULL,'',0,1,'2024-05-16T14:00:00+00:00','','',0,'[]','2024-05-15T14:00:00+00:00','',0,'');
INSERT INTO draft VALUES(3,2,'thank_you',0,'maria@acme.example','María Chen','sent','2024-05-06T16:00:00+00:00','<a1.mailbridge@example.com>','r-1-1','2024-05-06T16:00:00+00:00','abc123',0,0,NULL,'','Thank you — interview with Acme',1,'["unfilled gap"]','2024-05-06T16:00:00+00:00','',0,'');
INSERT INTO draft VALUES(4,2,'follow_up',1,'maria@acme.example','María Chen','retracted','2024-05-15T14:00:00+00:00','<b1.mailbridge@example.com>','r-1-2',NULL,'',0,1,'2024-05-16T14:00:00+00:00','','',0,'[]','2024-05-15T14:00:00+00:00','',1,'');
CREATE TABLE event (
        account TEXT NOT NULL,
        calendar TEXT NOT NULL,
        uid TEXT NOT NULL,
        instance TEXT NOT NULL DEFAULT '',
        title TEXT NOT NULL,
        start TEXT NOT NULL,
        end TEXT NOT NULL,
        interview INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (account, calendar, uid, instance)
    );
INSERT INTO event VALUES('personal','primary','uid-0@example.com','','Interview: Staff Engineer — Acme ‘Robotics’','2024-05-06T14:00:00+00:00','2024-05-06T15:00:00+00:00',1,'keyword ''interview'', 2 external attendees');
INSERT INTO event VALUES('personal','primary','standup-0','2024-05-07T09:00:00+00:00','Standup','2024-05-06T14:00:00+00:00','2024-05-06T14:00:00+00:00',0,'no keyword');
INSERT INTO event VALUES('work','https://dav.example/cal/','uid-1@example.com','','Interview: Staff Engineer — Acme ‘Robotics’','2024-05-06T14:00:00+00:00','2024-05-06T15:00:00+00:00',1,'keyword ''interview'', 2 external attendees');
INSERT INTO event VALUES('work','https://dav.example/cal/','standup-1','2024-05-07T09:00:00+00:00','Standup','2024-05-06T14:00:00+00:00','2024-05-06T14:00:00+00:00',0,'no keyword');
CREATE TABLE interview (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        calendar TEXT NOT NULL,
        uid TEXT NOT NULL,
        instance TEXT NOT NULL DEFAULT '',
        title TEXT NOT NULL,
        company TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL DEFAULT '',
        start TEXT NOT NULL,
        end TEXT NOT NULL,
        state TEXT NOT NULL,
        attendees TEXT NOT NULL DEFAULT '[]',
        lead TEXT,
        lead_override TEXT,
        notes TEXT NOT NULL DEFAULT '',
        notes_version INTEGER NOT NULL DEFAULT 0,
        decision_date TEXT,
        employer_domains TEXT NOT NULL DEFAULT '[]',
        updated_at TEXT NOT NULL, company_override TEXT NOT NULL DEFAULT '', company_reason TEXT NOT NULL DEFAULT '', missing_since TEXT, missing_listings INTEGER NOT NULL DEFAULT 0, archived_at TEXT,
        UNIQUE (account, calendar, uid, instance)
    );
INSERT INTO interview VALUES(1,'personal','primary','uid-0@example.com','','Interview: Staff Engineer — Acme','Acme','Staff Engineer','2024-05-06T14:00:00+00:00','2024-05-06T15:00:00+00:00','active','[{"email": "maria@acme.example", "name": "Mar\u00eda Chen"}, {"email": "raj@acme.example", "name": "Raj O''Patel"}]','{"email": "raj@acme.example", "name": "Raj O''Patel"}','raj@acme.example',replace('Talked about the robot arm;\nmention my ROS work. ''quotes'' "double"\nwe talked about their move to ROS 2','\n',char(10)),4,'2024-05-20','["acme.example"]','2026-01-10T12:00:00+00:00','Northwind Robotics Co','',NULL,0,NULL);
INSERT INTO interview VALUES(2,'work','https://dav.example/cal/','uid-1@example.com','','Interview: Staff Engineer — Acme','Acme','Staff Engineer','2024-05-06T14:00:00+00:00','2024-05-06T15:00:00+00:00','active','[{"email": "maria@acme.example", "name": "Mar\u00eda Chen"}, {"email": "raj@acme.example", "name": "Raj O''Patel"}]','{"email": "raj@acme.example", "name": "Raj O''Patel"}','raj@acme.example',replace('Talked about the robot arm;\nmention my ROS work. ''quotes'' "double"','\n',char(10)),1,'2024-05-20','["acme.example"]','2024-05-06T14:00:00+00:00','','','2024-05-06T15:00:00+00:00',1,NULL);
CREATE TABLE message (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        folder TEXT NOT NULL,
        provider_id TEXT NOT NULL,
        message_id TEXT NOT NULL DEFAULT '',
        interview_id INTEGER REFERENCES interview(id),
        kind TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        sender TEXT NOT NULL DEFAULT '',
        recipients TEXT NOT NULL DEFAULT '[]',
        subject TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL,
        return_date TEXT,
        our_draft_id INTEGER REFERENCES draft(id),
        UNIQUE (account, folder, provider_id)
    );
INSERT INTO message VALUES(1,'personal','inbox','m-0','<reply0@acme.example>',1,'human','in thread','maria@acme.example','["me@example.com"]','Re: Thank you','2024-05-16T14:00:00+00:00',NULL,1);
INSERT INTO message VALUES(2,'personal','inbox','oof-0','<oof0@acme.example>',1,'out_of_office','auto-submitted','raj@acme.example','["me@example.com"]','Automatic reply','2024-05-09T14:00:00+00:00','2024-05-13',NULL);
INSERT INTO message VALUES(3,'personal','sent','s-0','',NULL,'human','unrelated','me@example.com','[]','Lunch?','2024-05-06T14:00:00+00:00',NULL,NULL);
INSERT INTO message VALUES(4,'work','inbox','m-1','<reply1@acme.example>',2,'human','in thread','maria@acme.example','["me@example.com"]','Re: Thank you','2024-05-16T14:00:00+00:00',NULL,3);
INSERT INTO message VALUES(5,'work','inbox','oof-1','<oof1@acme.example>',2,'out_of_office','auto-submitted','raj@acme.example','["me@example.com"]','Automatic reply','2024-05-09T14:00:00+00:00','2024-05-13',NULL);
INSERT INTO message VALUES(6,'work','sent','s-1','',NULL,'human','unrelated','me@example.com','[]','Lunch?','2024-05-06T14:00:00+00:00',NULL,NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES('schema_version','7');
CREATE TABLE note (
        id INTEGER PRIMARY KEY,
        interview_id INTEGER NOT NULL REFERENCES interview(id),
        recipient TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
INSERT INTO note VALUES(1,1,'',replace('Talked about the robot arm;\nmention my ROS work. ''quotes'' "double"','\n',char(10)),'2024-05-06T14:00:00+00:00');
INSERT INTO note VALUES(2,2,'',replace('Talked about the robot arm;\nmention my ROS work. ''quotes'' "double"','\n',char(10)),'2024-05-06T14:00:00+00:00');
INSERT INTO note VALUES(3,1,'','we talked about their move to ROS 2','2026-01-10T12:00:00+00:00');
INSERT INTO note VALUES(4,1,'maria@acme.example','Her story about the warehouse robots','2026-01-10T12:00:00+00:00');
CREATE TABLE sync (
        account TEXT NOT NULL,
        resource TEXT NOT NULL,
        cursor TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (account, resource)
    );
INSERT INTO sync VALUES('personal','calendar:primary','sync-token-é-0','2024-05-06T14:00:00+00:00');
INSERT INTO sync VALUES('personal','mail',NULL,'2024-05-06T14:00:00+00:00');
INSERT INTO sync VALUES('work','calendar:https://dav.example/cal/','sync-token-é-1','2024-05-06T14:00:00+00:00');
INSERT INTO sync VALUES('work','mail',NULL,'2024-05-06T14:00:00+00:00');
CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT INTO generation VALUES(1,0);
CREATE INDEX audit_at ON audit (account, at);
CREATE INDEX message_interview ON message (interview_id);
CREATE INDEX draft_interview ON draft (interview_id);
CREATE INDEX note_interview ON note (interview_id);
CREATE INDEX interview_live ON interview (account, archived_at);
CREATE INDEX message_message_id ON message (account, message_id);
CREATE TRIGGER interview_insert_news AFTER INSERT ON interview
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER interview_update_news AFTER UPDATE ON interview
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER interview_delete_news AFTER DELETE ON interview
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER draft_insert_news AFTER INSERT ON draft
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER draft_update_news AFTER UPDATE ON draft
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER draft_delete_news AFTER DELETE ON draft
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER message_insert_news AFTER INSERT ON message
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER message_update_news AFTER UPDATE ON message
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER message_delete_news AFTER DELETE ON message
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER note_insert_news AFTER INSERT ON note
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER note_update_news AFTER UPDATE ON note
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER note_delete_news AFTER DELETE ON note
        BEGIN UPDATE generation SET n = n + 1; END;
CREATE TRIGGER account_pause_news
        AFTER UPDATE OF paused, pauses, resume_confirmed ON account_state
        BEGIN UPDATE generation SET n = n + 1; END;
COMMIT;
